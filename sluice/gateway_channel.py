"""The channel workers and the recovery service reach the worker gateways through.

SLUICE_GATEWAY_TARGET is a gRPC target: one address, a DNS name that resolves to several,
or a list (`ipv4:127.0.0.1:50052,127.0.0.1:50062`). Calls are spread round-robin over the
gateways that are up; one that goes away is left out until it is back, so a worker's next
calls (new claims, and the resumption of its running attempts) go to another. TLS (and the
client certificate for mTLS) come from sluice.grpc_channels, as for every other channel.
"""

from __future__ import annotations

import json

import grpc

from sluice.grpc_channels import open_channel
from sluice.message_limits import report_max_bytes
from sluice.settings import Settings

SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def gateway_channel(settings: Settings) -> grpc.aio.Channel:
    return open_channel(settings.gateway_address, settings, options=[
        ("grpc.max_send_message_length", report_max_bytes()),
        ("grpc.service_config", SERVICE_CONFIG),
        # A name that resolves to several addresses is looked up again now and then, so
        # gateways added behind it are found.
        ("grpc.dns_min_time_between_resolutions_ms", 5_000),
    ])
