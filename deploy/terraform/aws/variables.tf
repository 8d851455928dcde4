variable "name" {
  description = "Prefix of every resource's name; also SLUICE_QUEUE_PREFIX, so the alarms and scaling find the queues."
  type        = string
  default     = "sluice"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2-21 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

# VPC wiring: the VPC and its subnets exist already (one network team, many services).
variable "vpc_id" {
  description = "The VPC everything runs in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (with a NAT or VPC endpoints for ECR, Secrets Manager, S3, CloudWatch) for tasks, the broker, the database and the gateway's load balancer; at least two AZs."
  type        = list(string)
  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids: at least two subnets, in different AZs."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets for the API's internet-facing load balancer."
  type        = list(string)
}

variable "image" {
  description = "The Sluice image (deploy/image/Dockerfile), by digest: REGISTRY/sluice@sha256:..."
  type        = string
}

# Endpoints: the public API and the worker gateway are two load balancers (the seeds' dual
# endpoint). Both terminate TLS with an ACM certificate and speak HTTP/2 (gRPC) inward.
variable "api_certificate_arn" {
  description = "ACM certificate for the public API's name."
  type        = string
}

variable "api_allowed_cidrs" {
  description = "Who may reach the public API."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "gateway_certificate_arn" {
  description = "ACM certificate for gateway_hostname (workers verify it)."
  type        = string
}

variable "gateway_hostname" {
  description = "The name workers dial for the gateway (an alias of the internal load balancer); SLUICE_GATEWAY_TARGET."
  type        = string
}

variable "gateway_zone_id" {
  description = "Route 53 (private) hosted zone in which to create gateway_hostname; empty: the operator points the name at the output gateway_lb_dns_name."
  type        = string
  default     = ""
}

variable "external_worker_cidrs" {
  description = "Networks of workers outside this VPC's ECS cluster (other hosts, other accounts over peering or VPN) allowed to the gateway."
  type        = list(string)
  default     = []
}

variable "metrics_cidrs" {
  description = "Networks from which Prometheus scrapes the tasks' :9100."
  type        = list(string)
  default     = []
}

# Capacity.
variable "control_plane_count" {
  description = "Control planes (at least 2 on one PostgreSQL store)."
  type        = number
  default     = 2
  validation {
    condition     = var.control_plane_count >= 2
    error_message = "control_plane_count: at least 2."
  }
}

variable "worker_max_count" {
  description = "Most worker tasks (the scaling policy goes from 0 to this)."
  type        = number
  default     = 20
}

variable "worker_slots" {
  description = "SLUICE_WORKER_SLOTS: jobs one worker runs at once; the scaling policy adds a worker per this many queued or running jobs."
  type        = number
  default     = 2
}

variable "worker_shutdown_grace_s" {
  description = "SLUICE_WORKER_SHUTDOWN_GRACE_S; the worker container's stopTimeout is this plus 15 s (ECS allows 120 s at most)."
  type        = number
  default     = 30
  validation {
    condition     = var.worker_shutdown_grace_s + 15 <= 120
    error_message = "worker_shutdown_grace_s: at most 105 (ECS stops a container 120 s after SIGTERM at the latest)."
  }
}

variable "retry_delays_ms" {
  description = "The retry queues' delays: RETRY_DELAYS_MS in sluice/topology.py (deploy/check.sh checks they agree); their messages are not counted as work."
  type        = list(number)
  default     = [1000, 5000, 30000]
}

variable "worker_instance_types" {
  description = "EC2 types for the workers' Spot capacity (several, so Spot finds one)."
  type        = list(string)
  default     = ["c6i.xlarge", "c6a.xlarge", "c5.xlarge", "m6i.xlarge"]
}

# Data stores.
variable "broker_instance_type" {
  description = "Amazon MQ instance type (a cluster of three: quorum queues need one)."
  type        = string
  default     = "mq.m5.large"
}

variable "broker_engine_version" {
  description = "RabbitMQ version on Amazon MQ."
  type        = string
  default     = "3.13"
}

variable "broker_username" {
  description = "The broker's user for Sluice."
  type        = string
  default     = "sluice"
}

variable "broker_password" {
  description = "Its password (12 to 250 characters, no commas, colons or equals signs); also goes into SLUICE_AMQP_URL in Secrets Manager."
  type        = string
  sensitive   = true
}

variable "db_instance_class" {
  description = "RDS PostgreSQL instance class."
  type        = string
  default     = "db.m6g.large"
}

variable "db_engine_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
}

variable "db_password" {
  description = "The database user's password; goes into SLUICE_STORE_URL in Secrets Manager."
  type        = string
  sensitive   = true
}

variable "archive_prefix" {
  description = "Prefix of archived jobs in the archive bucket (SLUICE_ARCHIVE_URL=s3://BUCKET/PREFIX)."
  type        = string
  default     = "jobs"
}

variable "alarm_email" {
  description = "Where the dead-letter alarms are mailed (an SNS subscription to confirm); empty: subscribe the output alarm_topic_arn yourself."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention of the services' logs."
  type        = number
  default     = 365
}
