#!/opt/sluice/bin/python3
"""A gRPC health check over TLS, for Kubernetes exec probes and ECS health checks.

Kubernetes' own `grpc:` probe speaks plaintext only; once SLUICE_TLS_CERT_FILE is set both
listeners serve TLS alone, so the probe runs this instead. It trusts SLUICE_TLS_CA_FILE
(else the system roots) and checks the name given by --authority against the server's
certificate, since the probe dials 127.0.0.1, which the certificate does not name.

    sluice-health [--tls] [--authority NAME] [--service NAME] [TARGET]

Exit status 0 when the service answers SERVING, 1 otherwise (the reason on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser(prog="sluice-health")
    parser.add_argument("target", nargs="?", default="127.0.0.1:50051")
    parser.add_argument("--service", default="", help="health service name ('' = server)")
    parser.add_argument("--tls", action="store_true", help="dial with TLS")
    parser.add_argument("--authority", default="", help="the name the certificate carries")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()

    options: list[tuple[str, str]] = []
    if args.tls:
        ca_file = os.environ.get("SLUICE_TLS_CA_FILE", "")
        roots = Path(ca_file).read_bytes() if ca_file else None
        if args.authority:
            options.append(("grpc.ssl_target_name_override", args.authority))
        channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(roots),
                                      options=options)
    else:
        channel = grpc.insecure_channel(args.target)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service),
                           timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"sluice-health: {args.target}: {exc.code().name}: {exc.details()}",
              file=sys.stderr)
        return 1
    finally:
        channel.close()
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"sluice-health: {args.target}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
