"""``python -m reward_server.healthcheck``: exit 0 when a reward server reports SERVING, else 1.

The container image's HEALTHCHECK runs this instead of a downloaded ``grpc_health_probe`` binary: it asks the standard
``grpc.health.v1.Health`` service, which the server keeps open even when auth is on, and which turns NOT_SERVING as
soon as a graceful shutdown starts (so a draining replica stops counting as healthy).
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reward.v1 import reward_pb2

#: The service name the server registers with the health service (besides "" for the whole server).
REWARD_SERVICE = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name


def check(address: str, service: str = REWARD_SERVICE, timeout: float = 3.0) -> tuple[bool, str]:
    """Ask ``address`` for the health of ``service``; return (serving, a one-line report).

    Every failure (nothing listening, deadline passed, unknown service) is a (False, reason) answer, never an
    exception, because a probe must always come to a verdict.

    Example:
        >>> serving, report = check("127.0.0.1:1", timeout=1.0)  # nothing listens on port 1
        >>> serving
        False
    """
    label = service or "(server)"
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            details = f": {exc.details()}" if exc.details() else ""
            return False, f"{address} {label}: {exc.code().name}{details}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, f"{address} {label}: {status}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reward_server.healthcheck",
        description="Exit 0 if the reward server at ADDRESS reports SERVING through grpc.health.v1, else 1.",
    )
    parser.add_argument("--address", default="127.0.0.1:50051", help="host:port of the server (default %(default)s)")
    parser.add_argument(
        "--service",
        default=REWARD_SERVICE,
        help="service to ask about; '' asks about the whole server (default %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    serving, report = check(args.address, args.service, args.timeout)
    print(report, file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
