# The services' secrets, read by ECS into their SLUICE_* variables. The two URLs are
# written here from the passwords given; the worker token and the admin key are made by
# Sluice itself after the first deployment (docs/operations.md, "AWS"), so Terraform
# creates their secrets empty and never reads or overwrites their values.
resource "aws_secretsmanager_secret" "store_url" {
  #checkov:skip=CKV2_AWS_57:rotating means changing the database password with it; see docs/operations.md
  name       = "${var.name}/store-url"
  kms_key_id = aws_kms_key.sluice.arn
}

resource "aws_secretsmanager_secret_version" "store_url" {
  secret_id     = aws_secretsmanager_secret.store_url.id
  secret_string = "postgresql://sluice:${urlencode(var.db_password)}@${aws_db_instance.store.address}:${aws_db_instance.store.port}/sluice"
}

resource "aws_secretsmanager_secret" "amqp_url" {
  #checkov:skip=CKV2_AWS_57:rotating means changing the broker password with it; see docs/operations.md
  name       = "${var.name}/amqp-url"
  kms_key_id = aws_kms_key.sluice.arn
}

resource "aws_secretsmanager_secret_version" "amqp_url" {
  secret_id = aws_secretsmanager_secret.amqp_url.id
  # amqps: Amazon MQ for RabbitMQ serves AMQP over TLS only (5671).
  secret_string = "amqps://${var.broker_username}:${urlencode(var.broker_password)}@${trimprefix(aws_mq_broker.rabbitmq.instances[0].endpoints[0], "amqps://")}/"
}

resource "aws_secretsmanager_secret" "worker_token" {
  #checkov:skip=CKV2_AWS_57:a worker token is rotated with sluice worker-token create/revoke
  name       = "${var.name}/worker-token"
  kms_key_id = aws_kms_key.sluice.arn
}

resource "aws_secretsmanager_secret" "admin_key" {
  #checkov:skip=CKV2_AWS_57:an admin key is rotated with sluice key create/revoke
  name       = "${var.name}/admin-key"
  kms_key_id = aws_kms_key.sluice.arn
}
