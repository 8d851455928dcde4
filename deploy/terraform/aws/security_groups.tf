# Security groups mirror the Kubernetes NetworkPolicies (deploy/kubernetes/base/
# network-policies.yaml): the API's load balancer admits clients, the gateway's only
# workers and recovery; workers reach RabbitMQ and the gateway and nothing else.

resource "aws_security_group" "api_lb" {
  name        = "${var.name}-api-lb"
  description = "Sluice public API load balancer"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "gateway_lb" {
  name        = "${var.name}-gateway-lb"
  description = "Sluice worker gateway load balancer (internal)"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "control_plane" {
  name        = "${var.name}-control-plane"
  description = "Sluice control plane tasks"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "worker" {
  name        = "${var.name}-worker"
  description = "Sluice worker tasks"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "worker_host" {
  name        = "${var.name}-worker-host"
  description = "EC2 hosts of the worker tasks (the ECS agent, image pulls)"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "recovery" {
  name        = "${var.name}-recovery"
  description = "Sluice recovery task"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "broker" {
  name        = "${var.name}-broker"
  description = "Amazon MQ for RabbitMQ"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "database" {
  name        = "${var.name}-database"
  description = "RDS PostgreSQL store"
  vpc_id      = var.vpc_id
}

# The API: clients -> load balancer -> control plane :50051.
resource "aws_vpc_security_group_ingress_rule" "api_lb_clients" {
  for_each          = toset(var.api_allowed_cidrs)
  security_group_id = aws_security_group.api_lb.id
  description       = "gRPC clients (TLS)"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "api_lb_to_control_plane" {
  security_group_id            = aws_security_group.api_lb.id
  description                  = "to the control planes' API port"
  referenced_security_group_id = aws_security_group.control_plane.id
  ip_protocol                  = "tcp"
  from_port                    = 50051
  to_port                      = 50051
}

resource "aws_vpc_security_group_ingress_rule" "control_plane_api" {
  security_group_id            = aws_security_group.control_plane.id
  description                  = "API from its load balancer"
  referenced_security_group_id = aws_security_group.api_lb.id
  ip_protocol                  = "tcp"
  from_port                    = 50051
  to_port                      = 50051
}

# The gateway: workers and recovery -> internal load balancer -> control plane :50052.
resource "aws_vpc_security_group_ingress_rule" "gateway_lb_from" {
  for_each = {
    worker   = aws_security_group.worker.id
    recovery = aws_security_group.recovery.id
  }
  security_group_id            = aws_security_group.gateway_lb.id
  description                  = "gateway from ${each.key}"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_ingress_rule" "gateway_lb_external_workers" {
  for_each          = toset(var.external_worker_cidrs)
  security_group_id = aws_security_group.gateway_lb.id
  description       = "gateway from workers outside the cluster"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "gateway_lb_to_control_plane" {
  security_group_id            = aws_security_group.gateway_lb.id
  description                  = "to the control planes' gateway port"
  referenced_security_group_id = aws_security_group.control_plane.id
  ip_protocol                  = "tcp"
  from_port                    = 50052
  to_port                      = 50052
}

resource "aws_vpc_security_group_ingress_rule" "control_plane_gateway" {
  security_group_id            = aws_security_group.control_plane.id
  description                  = "gateway from its load balancer only"
  referenced_security_group_id = aws_security_group.gateway_lb.id
  ip_protocol                  = "tcp"
  from_port                    = 50052
  to_port                      = 50052
}

# Metrics, from Prometheus.
resource "aws_vpc_security_group_ingress_rule" "metrics" {
  for_each = {
    for pair in setproduct(["control_plane", "worker", "recovery"], var.metrics_cidrs) :
    "${pair[0]}-${pair[1]}" => pair
  }
  security_group_id = {
    control_plane = aws_security_group.control_plane.id
    worker        = aws_security_group.worker.id
    recovery      = aws_security_group.recovery.id
  }[each.value[0]]
  description = "Prometheus scrapes /metrics"
  cidr_ipv4   = each.value[1]
  ip_protocol = "tcp"
  from_port   = 9100
  to_port     = 9100
}

# Egress of the three services.
resource "aws_vpc_security_group_egress_rule" "to_broker" {
  for_each = {
    control_plane = aws_security_group.control_plane.id
    worker        = aws_security_group.worker.id
    recovery      = aws_security_group.recovery.id
  }
  security_group_id            = each.value
  description                  = "AMQPS to RabbitMQ"
  referenced_security_group_id = aws_security_group.broker.id
  ip_protocol                  = "tcp"
  from_port                    = 5671
  to_port                      = 5671
}

resource "aws_vpc_security_group_ingress_rule" "broker_from" {
  for_each = {
    control_plane = aws_security_group.control_plane.id
    worker        = aws_security_group.worker.id
    recovery      = aws_security_group.recovery.id
  }
  security_group_id            = aws_security_group.broker.id
  description                  = "AMQPS from ${each.key}"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5671
  to_port                      = 5671
}

resource "aws_vpc_security_group_egress_rule" "to_gateway" {
  for_each = {
    worker   = aws_security_group.worker.id
    recovery = aws_security_group.recovery.id
  }
  security_group_id            = each.value
  description                  = "the worker gateway's load balancer"
  referenced_security_group_id = aws_security_group.gateway_lb.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_egress_rule" "control_plane_to_database" {
  security_group_id            = aws_security_group.control_plane.id
  description                  = "PostgreSQL"
  referenced_security_group_id = aws_security_group.database.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_ingress_rule" "database_from_control_plane" {
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the control planes"
  referenced_security_group_id = aws_security_group.control_plane.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

# HTTPS out: S3 (the archive), and for Fargate tasks ECR, Secrets Manager and CloudWatch
# Logs, which the task's own interface reaches. Workers get none: on EC2 the host's agent
# pulls images and reads secrets through the host's interface (worker_host).
resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = {
    control_plane = aws_security_group.control_plane.id
    recovery      = aws_security_group.recovery.id
    worker_host   = aws_security_group.worker_host.id
  }
  security_group_id = each.value
  description       = "HTTPS to AWS APIs (S3, ECR, Secrets Manager, Logs, ECS)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}
