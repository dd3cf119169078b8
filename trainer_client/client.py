"""``RewardClient``: sync and async calls to ``reward.v1.RewardService`` with load balancing, deadlines and retries.

Retries and load balancing are gRPC's own (a service config on the channel), so a replica that
dies mid-call is retried on another one without any loop of ours. A failure is never turned into
a score: after the retries every call raises :class:`~trainer_client.errors.RewardServiceError`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from reward.v1 import reward_pb2 as pb
from reward.v1 import reward_pb2_grpc
from trainer_client.catalogue import Catalogue, RewardInfo
from trainer_client.catalogue import catalogue as to_catalogue
from trainer_client.convert import RewardLike, ScoreResult, from_response, reward_name, reward_spec, to_sample
from trainer_client.errors import RewardServiceError

SERVICE = pb.DESCRIPTOR.services_by_name["RewardService"].full_name
_MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC retry policy for the reward service's methods (applied by the channel, with backoff and jitter).

    gRPC caps ``max_attempts`` at 5. The per-call deadline bounds all attempts together.
    """

    max_attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    backoff_multiplier: float = 2.0
    # RESOURCE_EXHAUSTED is retried only as far as the server's retry pushback allows: a busy
    # queue or a team rate limit sends "retry after N ms", a request over a size limit sends
    # "do not retry" (gRPC honours grpc-retry-pushback-ms).
    retryable_codes: tuple[str, ...] = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")

    def service_config(self) -> str:
        """The channel's service config: round_robin over every resolved address, retries on our methods.

        Example:
            >>> config = json.loads(RetryPolicy(max_attempts=3).service_config())
            >>> config["loadBalancingConfig"], config["methodConfig"][0]["retryPolicy"]["maxAttempts"]
            ([{'round_robin': {}}], 3)
        """
        method: dict[str, Any] = {"name": [{"service": SERVICE}]}
        if self.max_attempts > 1:
            method["retryPolicy"] = {
                "maxAttempts": min(self.max_attempts, 5),
                "initialBackoff": f"{self.initial_backoff_s}s",
                "maxBackoff": f"{self.max_backoff_s}s",
                "backoffMultiplier": self.backoff_multiplier,
                "retryableStatusCodes": list(self.retryable_codes),
            }
        return json.dumps({"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": [method]})


def normalize_target(target: str | Sequence[str]) -> str:
    """A gRPC target from one address, several (``"h:p,h:p"`` or a list), or a URI such as ``dns:///name:port``.

    Several addresses without a scheme must be IP literals (gRPC's ``ipv4:``/``ipv6:`` schemes);
    several host names go behind one DNS name instead (``dns:///rewards.internal:50051``).

    Example:
        >>> normalize_target("127.0.0.1:5001, 127.0.0.1:5002")
        'ipv4:127.0.0.1:5001,127.0.0.1:5002'
        >>> normalize_target("localhost:50051")
        'localhost:50051'
        >>> normalize_target("ipv4:10.0.0.1:1,10.0.0.2:1")
        'ipv4:10.0.0.1:1,10.0.0.2:1'
    """
    if isinstance(target, str):
        target = target.strip()
        if "," not in target or target.startswith(("ipv4:", "ipv6:")):
            # One address, or a URI whose scheme gRPC parses itself (ipv4:, ipv6:, dns:, unix:).
            if not target:
                raise ValueError("empty reward service target; expected host:port, ipv4:h:p,h:p or dns:///name:port")
            return ",".join(p.strip() for p in target.split(","))
        target = target.split(",")
    parts = [p.strip() for p in target if p.strip()]
    if len(parts) == 1:
        return normalize_target(parts[0])
    families = set()
    for part in parts:
        host = part.rsplit(":", 1)[0].strip("[]")
        try:
            families.add(ipaddress.ip_address(host).version)
        except ValueError:
            raise ValueError(
                f"reward service target {part!r}: several addresses must be IP literals (ipv4:h:p,h:p); "
                "put host names behind one DNS name (dns:///name:port) instead"
            ) from None
    if len(families) > 1:
        raise ValueError(f"reward service target {target!r} mixes IPv4 and IPv6 addresses; gRPC needs one family")
    return f"ipv{families.pop()}:" + ",".join(parts)


def _credentials(
    tls: bool | str | Path | grpc.ChannelCredentials, client_cert: str | Path | None, client_key: str | Path | None
) -> grpc.ChannelCredentials | None:
    if bool(client_cert) != bool(client_key):
        raise ValueError("mTLS needs both client_cert and client_key (PEM files)")
    if tls is False or tls is None:
        if client_cert:
            raise ValueError("client_cert/client_key (mTLS) need tls=True or a CA file")
        return None
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    return grpc.ssl_channel_credentials(
        root_certificates=None if tls is True else Path(tls).read_bytes(),
        private_key=Path(client_key).read_bytes() if client_key else None,
        certificate_chain=Path(client_cert).read_bytes() if client_cert else None,
    )


class RewardClient:
    """Client of ``reward.v1.RewardService``: ``score``/``score_async``, ``list_rewards``, ``health``.

    Args:
        target: one address (``host:port``), several (``ipv4:h:p,h:p`` or a list; round_robin over them),
            or a resolver URI (``dns:///name:port``: every address the name resolves to).
        deadline_s: per-call deadline in seconds, covering every retry attempt.
        token: sent as ``authorization: Bearer <token>`` on every call.
        tls: False (plaintext), True (system roots), a path to a PEM root CA, or ``grpc.ChannelCredentials``.
        client_cert: PEM client certificate chain, for servers that require mTLS (with ``client_key``).
        client_key: PEM private key of ``client_cert``.
        retry: retry policy on UNAVAILABLE and pushed-back RESOURCE_EXHAUSTED (``RetryPolicy(max_attempts=1)``
            turns retries off).
        options: extra gRPC channel options.
        typed_fields: send non-string dataset columns with their JSON types (``Sample.typed_fields``, the default);
            False sends every column as text in ``Sample.fields``, for servers older than typed fields (they ignore
            ``typed_fields``, so a reward there would not find a numeric column).

    Example:
        >>> client = RewardClient("127.0.0.1:50051", deadline_s=10, token="s3cret")
        >>> client.target, client.deadline_s
        ('127.0.0.1:50051', 10)
        >>> client.close()
    """

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        deadline_s: float = 60.0,
        token: str | None = None,
        tls: bool | str | Path | grpc.ChannelCredentials = False,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        retry: RetryPolicy = RetryPolicy(),  # frozen: safe as a default
        options: Iterable[tuple[str, Any]] = (),
        typed_fields: bool = True,
    ) -> None:
        self.target = normalize_target(target)
        self.typed_fields = typed_fields
        self.deadline_s = deadline_s
        self.retry = retry
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._credentials = _credentials(tls, client_cert, client_key)
        self._options = [
            ("grpc.service_config", retry.service_config()),
            ("grpc.enable_retries", 1),
            # A replica that comes back is used again within seconds, not gRPC's default of up to 2 minutes.
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 5000),
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            *options,
        ]
        self._channel = self._open(grpc)
        self._stub = reward_pb2_grpc.RewardServiceStub(self._channel)
        self._aio: tuple[asyncio.AbstractEventLoop, grpc.aio.Channel, reward_pb2_grpc.RewardServiceStub] | None = None

    def _open(self, module: Any) -> Any:
        if self._credentials is None:
            return module.insecure_channel(self.target, options=self._options)
        return module.secure_channel(self.target, self._credentials, options=self._options)

    def _aio_stub(self) -> reward_pb2_grpc.RewardServiceStub:
        # An aio channel belongs to the event loop it was made in (TRL runs async rewards on its own loop thread).
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio[0] is not loop:
            channel = self._open(grpc.aio)
            self._aio = (loop, channel, reward_pb2_grpc.RewardServiceStub(channel))
        return self._aio[2]

    # -- Score ---------------------------------------------------------------------------------------------------

    def _request(
        self, samples: Sequence[Mapping[str, Any]], rewards: Sequence[RewardLike], request_id: str | None
    ) -> pb.ScoreRequest:
        return pb.ScoreRequest(
            samples=[to_sample(s, i, typed=self.typed_fields) for i, s in enumerate(samples)],
            rewards=[reward_spec(r, i) for i, r in enumerate(rewards)],
            request_id=request_id or uuid.uuid4().hex[:16],
        )

    def score(
        self,
        samples: Sequence[Mapping[str, Any]],
        rewards: Sequence[RewardLike],
        *,
        request_id: str | None = None,
        deadline_s: float | None = None,
    ) -> ScoreResult:
        """Score ``samples`` with ``rewards`` in one call.

        A sample is ``{"prompt", "completion", "fields", "completion_ids"}`` (all but completion optional): the
        prompt as text (a standard dataset) or chat messages (a conversational one), sent in that shape; the
        completion as text or messages (sent as its text); fields as column → JSON value; completion_ids as the
        completion's token ids, for rewards that read them (``RewardInfo.reads_completion_ids``).

        Raises:
            RewardServiceError: the call failed after the retries (``.code``, ``.details``).
            InputError: a sample or reward is malformed (nothing was sent).
        """
        request = self._request(samples, rewards, request_id)
        start = time.perf_counter()
        try:
            response = self._stub.Score(request, timeout=deadline_s or self.deadline_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise RewardServiceError.from_rpc_error(exc, "Score", self.target) from None
        return from_response(response, [reward_name(r) for r in rewards], (time.perf_counter() - start) * 1000)

    async def score_async(
        self,
        samples: Sequence[Mapping[str, Any]],
        rewards: Sequence[RewardLike],
        *,
        request_id: str | None = None,
        deadline_s: float | None = None,
    ) -> ScoreResult:
        """:meth:`score` for an event loop; calls from one loop share one channel."""
        request = self._request(samples, rewards, request_id)
        start = time.perf_counter()
        try:
            response = await self._aio_stub().Score(
                request, timeout=deadline_s or self.deadline_s, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise RewardServiceError.from_rpc_error(exc, "Score", self.target) from None
        return from_response(response, [reward_name(r) for r in rewards], (time.perf_counter() - start) * 1000)

    # -- Catalogue and health ------------------------------------------------------------------------------------

    def list_rewards(self, *, deadline_s: float | None = None) -> list[RewardInfo]:
        """The server's reward catalogue (names, aliases, fields, params, availability, code versions)."""
        return self.catalogue(deadline_s=deadline_s).rewards

    def catalogue(self, *, deadline_s: float | None = None) -> Catalogue:
        """The whole ListRewards answer: the rewards plus the server and catalogue versions."""
        try:
            response = self._stub.ListRewards(
                pb.ListRewardsRequest(), timeout=deadline_s or self.deadline_s, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise RewardServiceError.from_rpc_error(exc, "ListRewards", self.target) from None
        return to_catalogue(response)

    async def catalogue_async(self, *, deadline_s: float | None = None) -> Catalogue:
        """:meth:`catalogue` for an event loop (the TRL adapter looks the catalogue up from TRL's loop)."""
        try:
            response = await self._aio_stub().ListRewards(
                pb.ListRewardsRequest(), timeout=deadline_s or self.deadline_s, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise RewardServiceError.from_rpc_error(exc, "ListRewards", self.target) from None
        return to_catalogue(response)

    def health(self, *, service: str = SERVICE, deadline_s: float = 10.0) -> bool:
        """True if the standard gRPC health check says SERVING for ``service``.

        Raises:
            RewardServiceError: the server cannot be reached (or has no health service).
        """
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # the standard health protocol

        try:
            response = health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=deadline_s, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise RewardServiceError.from_rpc_error(exc, "Health/Check", self.target) from None
        return response.status == health_pb2.HealthCheckResponse.SERVING

    # -- Lifetime ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync channel (an aio channel closes with its event loop)."""
        self._channel.close()

    async def aclose(self) -> None:
        """Close the aio channel of the running loop, if any."""
        if self._aio is not None and self._aio[0] is asyncio.get_running_loop():
            await self._aio[1].close()
            self._aio = None

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RewardClient({self.target!r}, deadline_s={self.deadline_s})"
