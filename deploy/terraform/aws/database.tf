# RDS PostgreSQL: the store every control plane shares (SLUICE_STORE_URL).
resource "aws_db_subnet_group" "store" {
  name       = var.name
  subnet_ids = var.private_subnet_ids
}

resource "aws_db_parameter_group" "store" {
  name   = "${var.name}-postgres${var.db_engine_version}"
  family = "postgres${var.db_engine_version}"
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

resource "aws_db_instance" "store" {
  #checkov:skip=CKV_AWS_161:Sluice authenticates with the password in SLUICE_STORE_URL; IAM tokens expire every 15 minutes and the store has no hook to renew them
  identifier                      = var.name
  engine                          = "postgres"
  engine_version                  = var.db_engine_version
  instance_class                  = var.db_instance_class
  allocated_storage               = 100
  max_allocated_storage           = 1000
  storage_type                    = "gp3"
  storage_encrypted               = true
  kms_key_id                      = aws_kms_key.sluice.arn
  db_name                         = "sluice"
  username                        = "sluice"
  password                        = var.db_password
  multi_az                        = true
  db_subnet_group_name            = aws_db_subnet_group.store.name
  parameter_group_name            = aws_db_parameter_group.store.name
  vpc_security_group_ids          = [aws_security_group.database.id]
  publicly_accessible             = false
  backup_retention_period         = 14
  copy_tags_to_snapshot           = true
  deletion_protection             = true
  skip_final_snapshot             = false
  final_snapshot_identifier       = "${var.name}-final"
  auto_minor_version_upgrade      = true
  performance_insights_enabled    = true
  performance_insights_kms_key_id = aws_kms_key.sluice.arn
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
}
