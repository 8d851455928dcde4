# One ECS cluster, three kinds of capacity: FARGATE and FARGATE_SPOT for the control plane
# and recovery, and an EC2 Auto Scaling group of Spot instances for the workers. Workers
# cannot run on Fargate: it allows no user namespaces and no CAP_SYS_ADMIN, so bubblewrap
# cannot start there (deploy/image/README.md).
resource "aws_ecs_cluster" "sluice" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "sluice" {
  cluster_name       = aws_ecs_cluster.sluice.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT", aws_ecs_capacity_provider.workers.name]
  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

data "aws_ssm_parameter" "ecs_ami" {
  name = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
}

resource "aws_launch_template" "worker_host" {
  name_prefix            = "${var.name}-worker-host-"
  image_id               = data.aws_ssm_parameter.ecs_ami.value
  vpc_security_group_ids = [aws_security_group.worker_host.id]
  update_default_version = true
  iam_instance_profile {
    arn = aws_iam_instance_profile.worker_host.arn
  }
  metadata_options {
    http_tokens                 = "required"
    http_endpoint               = "enabled"
    http_put_response_hop_limit = 1 # tasks (awsvpc) cannot reach the host's credentials
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 60
      volume_type = "gp3"
      encrypted   = true
      kms_key_id  = aws_kms_key.sluice.arn
    }
  }
  # Spot draining: on an interruption notice ECS drains the instance, so each worker gets
  # SIGTERM and its shutdown grace (the worker hands unfinished jobs back to the queue).
  # Amazon Linux 2023 runs cgroup v2 with the memory and pids controllers the sandbox uses
  # (and no AppArmor). Docker's default seccomp profile refuses bwrap's pivot_root, and ECS
  # cannot lift it per container: these hosts run workers only, so their Docker gets none
  # (each job runs under the sandbox's own filter).
  user_data = base64encode(<<-EOT
    #!/bin/bash
    set -e
    mkdir -p /etc/docker
    python3 - <<'PY'
    import json, pathlib
    path = pathlib.Path("/etc/docker/daemon.json")
    config = json.loads(path.read_text()) if path.exists() else {}
    config["seccomp-profile"] = "unconfined"
    path.write_text(json.dumps(config))
    PY
    systemctl try-restart docker
    cat >>/etc/ecs/ecs.config <<EOF
    ECS_CLUSTER=${var.name}
    ECS_ENABLE_SPOT_INSTANCE_DRAINING=true
    ECS_CONTAINER_STOP_TIMEOUT=${var.worker_shutdown_grace_s + 15}s
    ECS_ENABLE_TASK_IAM_ROLE=true
    EOF
  EOT
  )
  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-worker-host" }
  }
}

resource "aws_autoscaling_group" "worker_hosts" {
  name_prefix           = "${var.name}-worker-hosts-"
  vpc_zone_identifier   = var.private_subnet_ids
  min_size              = 0
  max_size              = var.worker_max_count
  protect_from_scale_in = true # ECS managed termination protection decides
  capacity_rebalance    = true
  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = 0
      on_demand_percentage_above_base_capacity = 0
      spot_allocation_strategy                 = "price-capacity-optimized"
    }
    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.worker_host.id
        version            = "$Latest"
      }
      dynamic "override" {
        for_each = var.worker_instance_types
        content {
          instance_type = override.value
        }
      }
    }
  }
  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }
  lifecycle {
    ignore_changes = [desired_capacity]
  }
}

resource "aws_ecs_capacity_provider" "workers" {
  name = "${var.name}-workers-spot"
  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.worker_hosts.arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"
    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = 100
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = 10
    }
  }
}
