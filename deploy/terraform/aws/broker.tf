# Amazon MQ for RabbitMQ, a three-node cluster across AZs: Sluice declares quorum queues
# (sluice/topology.py), which need a cluster to replicate.
resource "aws_mq_broker" "rabbitmq" {
  broker_name                = var.name
  engine_type                = "RabbitMQ"
  engine_version             = var.broker_engine_version
  host_instance_type         = var.broker_instance_type
  deployment_mode            = "CLUSTER_MULTI_AZ"
  publicly_accessible        = false
  subnet_ids                 = slice(var.private_subnet_ids, 0, min(length(var.private_subnet_ids), 3))
  security_groups            = [aws_security_group.broker.id]
  auto_minor_version_upgrade = true
  apply_immediately          = false

  encryption_options {
    kms_key_id        = aws_kms_key.sluice.arn
    use_aws_owned_key = false
  }

  logs {
    general = true
  }

  maintenance_window_start_time {
    day_of_week = "SUNDAY"
    time_of_day = "03:00"
    time_zone   = "UTC"
  }

  user {
    username = var.broker_username
    password = var.broker_password
  }
}
