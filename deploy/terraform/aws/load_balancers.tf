# Two endpoints (the seeds' dual endpoint): the public API on an internet-facing load
# balancer, the worker gateway on an internal one. Network load balancers terminate TLS
# with ACM certificates and must offer ALPN h2, without which gRPC clients refuse the
# connection; the tasks behind them listen in plaintext inside their security groups.
locals {
  endpoints = {
    api = {
      internal        = false
      subnets         = var.public_subnet_ids
      security_group  = aws_security_group.api_lb.id
      certificate_arn = var.api_certificate_arn
      port            = 50051
    }
    gateway = {
      internal        = true
      subnets         = var.private_subnet_ids
      security_group  = aws_security_group.gateway_lb.id
      certificate_arn = var.gateway_certificate_arn
      port            = 50052
    }
  }
}

resource "aws_lb" "endpoint" {
  #checkov:skip=CKV_AWS_91:access logs need a log bucket of the operator's; every RPC is logged by the control plane
  #checkov:skip=CKV2_AWS_20:TLS terminates at the TLS listener; NLBs have no HTTP redirect
  #checkov:skip=CKV2_AWS_28:WAF does not attach to network load balancers; the API authenticates every call
  for_each                         = local.endpoints
  name                             = "${var.name}-${each.key}"
  load_balancer_type               = "network"
  internal                         = each.value.internal
  subnets                          = each.value.subnets
  security_groups                  = [each.value.security_group]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = true
}

resource "aws_lb_target_group" "endpoint" {
  for_each             = local.endpoints
  name                 = "${var.name}-${each.key}"
  target_type          = "ip"
  protocol             = "TCP"
  port                 = each.value.port
  vpc_id               = var.vpc_id
  deregistration_delay = 30
  health_check {
    protocol            = "TCP"
    port                = tostring(each.value.port)
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

resource "aws_lb_listener" "endpoint" {
  for_each          = local.endpoints
  load_balancer_arn = aws_lb.endpoint[each.key].arn
  port              = 443
  protocol          = "TLS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = each.value.certificate_arn
  alpn_policy       = "HTTP2Only"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.endpoint[each.key].arn
  }
}

resource "aws_route53_record" "gateway" {
  count   = var.gateway_zone_id == "" ? 0 : 1
  zone_id = var.gateway_zone_id
  name    = var.gateway_hostname
  type    = "A"
  alias {
    name                   = aws_lb.endpoint["gateway"].dns_name
    zone_id                = aws_lb.endpoint["gateway"].zone_id
    evaluate_target_health = true
  }
}
