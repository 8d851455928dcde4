# The archive: finished jobs older than SLUICE_RETENTION_S leave the store for one object
# each here (SLUICE_ARCHIVE_URL); GetJob and WatchJob read them back.
resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice left to the operator
  #checkov:skip=CKV_AWS_18:access logging needs a log bucket of the operator's; the control plane is the only reader and writer
  #checkov:skip=CKV2_AWS_62:nothing consumes events of archived jobs
  bucket_prefix = "${var.name}-archive-"
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.sluice.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    id     = "versions-and-uploads"
    status = "Enabled"
    filter {}
    # An archived job is written once; old versions are only ever an overwrite's leftovers.
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}
