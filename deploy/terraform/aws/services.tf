# The three services: one image, the command picks the service (deploy/image/).
locals {
  queue_prefix = var.name
  environment = [
    { name = "SLUICE_QUEUE_PREFIX", value = local.queue_prefix },
    { name = "SLUICE_API_LISTEN", value = "0.0.0.0:50051" },
    { name = "SLUICE_GATEWAY_LISTEN", value = "0.0.0.0:50052" },
    { name = "SLUICE_METRICS_LISTEN", value = "0.0.0.0:9100" },
    { name = "SLUICE_LOG_FORMAT", value = "json" },
  ]
  # Workers and recovery dial the gateway's load balancer by its certificate's name, over
  # TLS checked against the system's roots (an ACM certificate).
  gateway_client_environment = [
    { name = "SLUICE_GATEWAY_TARGET", value = "dns:///${var.gateway_hostname}:443" },
    { name = "SLUICE_TLS_CA_FILE", value = "/etc/ssl/certs/ca-certificates.crt" },
  ]
  worker_token = [{ name = "SLUICE_WORKER_TOKEN", valueFrom = aws_secretsmanager_secret.worker_token.arn }]
  amqp_url     = [{ name = "SLUICE_AMQP_URL", valueFrom = aws_secretsmanager_secret.amqp_url.arn }]
  readonly_tmp = {
    readonlyRootFilesystem = true
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
  }
  services = toset(["control-plane", "worker", "recovery"])
}

resource "aws_cloudwatch_log_group" "service" {
  for_each          = local.services
  name              = "/sluice/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.sluice.arn
}

locals {
  log_configuration = {
    for service in local.services : service => {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service[service].name
        awslogs-region        = var.region
        awslogs-stream-prefix = service
      }
    }
  }
}

# Control plane -------------------------------------------------------------------------

resource "aws_ecs_task_definition" "control_plane" {
  family                   = "${var.name}-control-plane"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 1024
  memory                   = 2048
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.control_plane.arn
  volume {
    name = "tmp"
  }
  container_definitions = jsonencode([merge(local.readonly_tmp, {
    name      = "control-plane"
    image     = var.image
    command   = ["control-plane"]
    essential = true
    user      = "10001:10001"
    portMappings = [
      { containerPort = 50051, protocol = "tcp", name = "api" },
      { containerPort = 50052, protocol = "tcp", name = "gateway" },
      { containerPort = 9100, protocol = "tcp", name = "metrics" },
    ]
    environment = concat(local.environment, [
      { name = "SLUICE_ARCHIVE_URL", value = "s3://${aws_s3_bucket.archive.bucket}/${var.archive_prefix}" },
    ])
    secrets = concat(local.amqp_url, [
      { name = "SLUICE_STORE_URL", valueFrom = aws_secretsmanager_secret.store_url.arn },
    ])
    # The control plane applies missing migrations at start, one replica at a time.
    healthCheck = {
      command     = ["CMD", "sluice-health", "127.0.0.1:50051"]
      interval    = 10
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    linuxParameters  = { capabilities = { drop = ["ALL"] } }
    logConfiguration = local.log_configuration["control-plane"]
  })])
}

resource "aws_ecs_service" "control_plane" {
  name                               = "${var.name}-control-plane"
  cluster                            = aws_ecs_cluster.sluice.id
  task_definition                    = aws_ecs_task_definition.control_plane.arn
  desired_count                      = var.control_plane_count
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 150
  health_check_grace_period_seconds  = 60
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  # Two on regular Fargate at all times; anything above rides Fargate Spot.
  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    base              = 2
    weight            = 1
  }
  capacity_provider_strategy {
    capacity_provider = "FARGATE_SPOT"
    weight            = 3
  }
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.control_plane.id]
    assign_public_ip = false
  }
  dynamic "load_balancer" {
    for_each = local.endpoints
    content {
      target_group_arn = aws_lb_target_group.endpoint[load_balancer.key].arn
      container_name   = "control-plane"
      container_port   = load_balancer.value.port
    }
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  depends_on = [aws_lb_listener.endpoint]
}

# Recovery ------------------------------------------------------------------------------

resource "aws_ecs_task_definition" "recovery" {
  family                   = "${var.name}-recovery"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.no_aws_access.arn
  volume {
    name = "tmp"
  }
  container_definitions = jsonencode([merge(local.readonly_tmp, {
    name             = "recovery"
    image            = var.image
    command          = ["recovery"]
    essential        = true
    user             = "10001:10001"
    portMappings     = [{ containerPort = 9100, protocol = "tcp", name = "metrics" }]
    environment      = concat(local.environment, local.gateway_client_environment)
    secrets          = concat(local.amqp_url, local.worker_token)
    linuxParameters  = { capabilities = { drop = ["ALL"] } }
    logConfiguration = local.log_configuration["recovery"]
  })])
}

resource "aws_ecs_service" "recovery" {
  name                               = "${var.name}-recovery"
  cluster                            = aws_ecs_cluster.sluice.id
  task_definition                    = aws_ecs_task_definition.recovery.arn
  desired_count                      = 1
  deployment_minimum_healthy_percent = 0 # one sweeper at a time
  deployment_maximum_percent         = 100
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  # Scheduled sweeps, not load: an interruption delays one sweep.
  capacity_provider_strategy {
    capacity_provider = "FARGATE_SPOT"
    weight            = 1
  }
  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 0
  }
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.recovery.id]
    assign_public_ip = false
  }
}

# Workers -------------------------------------------------------------------------------

resource "aws_ecs_task_definition" "worker" {
  family                   = "${var.name}-worker"
  requires_compatibilities = ["EC2"]
  network_mode             = "awsvpc"
  cpu                      = 2048
  memory                   = 3072
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.no_aws_access.arn
  volume {
    name = "tmp"
  }
  container_definitions = jsonencode([merge(local.readonly_tmp, {
    name      = "worker"
    image     = var.image
    command   = ["worker"]
    essential = true
    # Root in the container and these capabilities, not privileged: the sandbox's needs,
    # each explained in deploy/image/README.md. Seccomp: the hosts' Docker runs without a
    # default profile (cluster.tf), since ECS cannot set one per container and Docker's
    # refuses bwrap's pivot_root.
    user       = "0:0"
    privileged = false
    linuxParameters = {
      initProcessEnabled = false # the image runs tini
      capabilities = {
        drop = ["ALL"]
        add  = ["SYS_ADMIN", "SETUID", "SETGID", "CHOWN", "FOWNER", "DAC_OVERRIDE", "KILL"]
      }
    }
    # SIGTERM, then the worker's grace to finish or hand back its jobs, then SIGKILL.
    stopTimeout  = var.worker_shutdown_grace_s + 15
    portMappings = [{ containerPort = 9100, protocol = "tcp", name = "metrics" }]
    environment = concat(local.environment, local.gateway_client_environment, [
      { name = "SLUICE_WORKER_SLOTS", value = tostring(var.worker_slots) },
      { name = "SLUICE_WORKER_SHUTDOWN_GRACE_S", value = tostring(var.worker_shutdown_grace_s) },
    ])
    secrets          = concat(local.amqp_url, local.worker_token)
    logConfiguration = local.log_configuration["worker"]
  })])
}

resource "aws_ecs_service" "worker" {
  name                               = "${var.name}-worker"
  cluster                            = aws_ecs_cluster.sluice.id
  task_definition                    = aws_ecs_task_definition.worker.arn
  desired_count                      = 0 # scaling.tf owns it from here
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.workers.name
    weight            = 1
  }
  network_configuration {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.worker.id]
  }
  lifecycle {
    ignore_changes = [desired_count]
  }
  depends_on = [aws_ecs_cluster_capacity_providers.sluice]
}
