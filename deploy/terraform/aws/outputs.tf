output "api_endpoint" {
  description = "The public API's load balancer: point the API's DNS name (its certificate's) here; clients dial NAME:443 with TLS."
  value       = aws_lb.endpoint["api"].dns_name
}

output "gateway_lb_dns_name" {
  description = "The worker gateway's internal load balancer (gateway_hostname aliases it)."
  value       = aws_lb.endpoint["gateway"].dns_name
}

output "gateway_target" {
  description = "SLUICE_GATEWAY_TARGET for workers on other hosts."
  value       = "dns:///${var.gateway_hostname}:443"
}

output "archive_url" {
  description = "SLUICE_ARCHIVE_URL."
  value       = "s3://${aws_s3_bucket.archive.bucket}/${var.archive_prefix}"
}

output "broker_console_url" {
  description = "RabbitMQ's management console (from inside the VPC)."
  value       = aws_mq_broker.rabbitmq.instances[0].console_url
}

output "database_address" {
  description = "The PostgreSQL store's host name."
  value       = aws_db_instance.store.address
}

output "worker_token_secret_arn" {
  description = "Put the worker token here after `sluice worker-token create` (docs/operations.md)."
  value       = aws_secretsmanager_secret.worker_token.arn
}

output "admin_key_secret_arn" {
  description = "Keep the first admin key here after `sluice admin bootstrap`."
  value       = aws_secretsmanager_secret.admin_key.arn
}

output "alarm_topic_arn" {
  description = "SNS topic of the dead-letter and control-plane alarms."
  value       = aws_sns_topic.alarms.arn
}

output "cluster_name" {
  description = "The ECS cluster (for `aws ecs run-task` of sluice migrate / admin bootstrap)."
  value       = aws_ecs_cluster.sluice.name
}
