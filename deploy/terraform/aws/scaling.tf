# Workers scale with the work queues, as KEDA does on Kubernetes: every shard's queue
# (NAME.work.N, sluice/topology.py), ready plus unacknowledged messages, so running jobs
# keep their workers. An alarm's metric math takes a handful of metrics, not one per queue,
# so the work queues' sum is the
# broker's totals less the queues that hold no runnable job: the dead-letter and parked
# queues and the retry queues (NAME.retry.<ms>ms, whose jobs wait out a delay). From zero
# workers the backlog alarm adds capacity in steps; when nothing is queued or running for
# 15 minutes, the idle alarm takes the service back to zero.
locals {
  idle_queues = concat(
    ["${local.queue_prefix}.dead", "${local.queue_prefix}.parked"],
    [for delay in var.retry_delays_ms : "${local.queue_prefix}.retry.${delay}ms"],
  )
  broker_metrics = {
    ready   = { metric = "MessageReadyCount", dimensions = {} }
    unacked = { metric = "MessageUnacknowledgedCount", dimensions = {} }
  }
  # Ready messages of every idle queue, and the recovery's unacked sweep of the dead one.
  idle_metrics = merge(
    {
      for index, queue in local.idle_queues : "idle${index}" => {
        metric     = "MessageReadyCount"
        dimensions = { VirtualHost = "/", Queue = queue }
      }
    },
    {
      idleunacked = {
        metric     = "MessageUnacknowledgedCount"
        dimensions = { VirtualHost = "/", Queue = "${local.queue_prefix}.dead" }
      }
    },
  )
  job_metrics     = merge(local.broker_metrics, local.idle_metrics)
  jobs_expression = "ready + unacked - (${join(" + ", keys(local.idle_metrics))})"
}

resource "aws_appautoscaling_target" "workers" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.sluice.name}/${aws_ecs_service.worker.name}"
  min_capacity       = 0
  max_capacity       = var.worker_max_count
}

resource "aws_appautoscaling_policy" "workers_out" {
  name               = "${var.name}-workers-out"
  service_namespace  = aws_appautoscaling_target.workers.service_namespace
  scalable_dimension = aws_appautoscaling_target.workers.scalable_dimension
  resource_id        = aws_appautoscaling_target.workers.resource_id
  policy_type        = "StepScaling"
  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 60
    metric_aggregation_type = "Maximum"
    # Jobs queued or running, per the alarm's threshold (0): a worker for the first few,
    # more as the backlog reaches several workers' slots.
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = var.worker_slots * 4
      scaling_adjustment          = 1
    }
    step_adjustment {
      metric_interval_lower_bound = var.worker_slots * 4
      metric_interval_upper_bound = var.worker_slots * 20
      scaling_adjustment          = 4
    }
    step_adjustment {
      metric_interval_lower_bound = var.worker_slots * 20
      scaling_adjustment          = 10
    }
  }
}

resource "aws_appautoscaling_policy" "workers_to_zero" {
  name               = "${var.name}-workers-to-zero"
  service_namespace  = aws_appautoscaling_target.workers.service_namespace
  scalable_dimension = aws_appautoscaling_target.workers.scalable_dimension
  resource_id        = aws_appautoscaling_target.workers.resource_id
  policy_type        = "StepScaling"
  step_scaling_policy_configuration {
    adjustment_type = "ExactCapacity"
    cooldown        = 300
    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = 0
    }
  }
}

# Jobs beyond what the running workers' slots hold: the backlog alarm fires while the
# queued-or-running count exceeds slots x running workers.
resource "aws_cloudwatch_metric_alarm" "workers_backlog" {
  alarm_name          = "${var.name}-workers-backlog"
  alarm_description   = "Sluice jobs queued or running beyond the running workers' slots: add workers."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.workers_out.arn]

  dynamic "metric_query" {
    for_each = local.job_metrics
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/AmazonMQ"
        metric_name = metric_query.value.metric
        period      = 60
        stat        = "Maximum"
        dimensions  = merge({ Broker = aws_mq_broker.rabbitmq.broker_name }, metric_query.value.dimensions)
      }
    }
  }
  metric_query {
    id = "running"
    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "RunningTaskCount"
      period      = 60
      stat        = "Maximum"
      dimensions = {
        ClusterName = aws_ecs_cluster.sluice.name
        ServiceName = aws_ecs_service.worker.name
      }
    }
  }
  metric_query {
    id          = "excess"
    expression  = "(${local.jobs_expression}) - ${var.worker_slots} * FILL(running, 0)"
    label       = "jobs beyond the workers' slots"
    return_data = true
  }
}

resource "aws_cloudwatch_metric_alarm" "workers_idle" {
  alarm_name          = "${var.name}-workers-idle"
  alarm_description   = "No Sluice job queued or running for 15 minutes: workers to zero."
  comparison_operator = "LessThanOrEqualToThreshold"
  threshold           = 0
  evaluation_periods  = 15
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.workers_to_zero.arn]

  dynamic "metric_query" {
    for_each = local.job_metrics
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/AmazonMQ"
        metric_name = metric_query.value.metric
        period      = 60
        stat        = "Maximum"
        dimensions  = merge({ Broker = aws_mq_broker.rabbitmq.broker_name }, metric_query.value.dimensions)
      }
    }
  }
  metric_query {
    id          = "jobs"
    expression  = local.jobs_expression
    label       = "jobs queued or running"
    return_data = true
  }
}
