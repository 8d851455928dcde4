# Paging on dead letters ("if you're not monitoring failures, you don't have a production
# system"): the dead-letter queue holding messages, and jobs parked after recovery's
# replay budget, alarm to an SNS topic. The Prometheus rules (deploy/prometheus/) cover the
# rest where Prometheus scrapes the tasks.
resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.sluice.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  dead_letter_alarms = {
    dead-letters = {
      queue       = "${local.queue_prefix}.dead"
      periods     = 15
      description = "Sluice dead letters have waited 15 minutes: recovery is not draining them (docs/operations.md, SluiceDeadLetterQueueNotEmpty)."
    }
    parked = {
      queue       = "${local.queue_prefix}.parked"
      periods     = 1
      description = "Sluice jobs parked after their replay budget (docs/operations.md, SluiceJobsParked)."
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each            = local.dead_letter_alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "AWS/AmazonMQ"
  metric_name         = "MessageReadyCount"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = each.value.periods
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  dimensions = {
    Broker      = aws_mq_broker.rabbitmq.broker_name
    VirtualHost = "/"
    Queue       = each.value.queue
  }
  alarm_actions = [aws_sns_topic.alarms.arn]
  ok_actions    = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "control_plane_unhealthy" {
  alarm_name          = "${var.name}-control-plane-unhealthy"
  alarm_description   = "No healthy control plane behind the API (docs/operations.md, SluiceControlPlaneDown)."
  namespace           = "AWS/NetworkELB"
  metric_name         = "HealthyHostCount"
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  dimensions = {
    LoadBalancer = aws_lb.endpoint["api"].arn_suffix
    TargetGroup  = aws_lb_target_group.endpoint["api"].arn_suffix
  }
  alarm_actions = [aws_sns_topic.alarms.arn]
  ok_actions    = [aws_sns_topic.alarms.arn]
}
