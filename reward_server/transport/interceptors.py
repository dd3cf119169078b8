"""The server interceptor: bearer-token auth, per-team limits, request ids, metrics.

One interceptor sees every RPC. Health checks stay open so that load balancers and
Kubernetes probes work without a token; every other RPC needs a valid token when auth is on.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from reward_server import metrics
from reward_server.auth import Authenticator
from reward_server.errors import ResourceExhausted
from reward_server.reporting import RepeatLimiter

log = logging.getLogger(__name__)

#: Who is calling and which request this is, for log lines (see ``logs.ContextFilter``).
TEAM: contextvars.ContextVar[str] = contextvars.ContextVar("team", default="-")
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
#: gRPC's standard retry pushback hint, honoured by clients with a retry policy.
PUSHBACK_KEY = "grpc-retry-pushback-ms"


def pushback(exc: ResourceExhausted) -> tuple[tuple[str, str], ...]:
    """Trailing metadata telling a retrying client when to try again, or (-1) not to."""
    millis = -1 if exc.retry_after_s is None else max(1, round(exc.retry_after_s * 1000))
    return ((PUSHBACK_KEY, str(millis)),)


#: Status codes that mean the call was refused (the caller's doing, or its limits): logged, sampled.
REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
#: One line per team and status code every few seconds: a flood of bad calls cannot fill the disk.
_refusals = RepeatLimiter(window_s=10.0)


def log_refused(method: str, team: str, code: grpc.StatusCode, reason: str) -> None:
    """Log a refused call with the team and the reason, sampled per (team, code); never the token."""
    admitted, held_back = _refusals.admit((team, code), 1)
    if admitted:
        more = f" (and {held_back} more refused like it since the last such line)" if held_back else ""
        log.warning("refused %s for team %s: %s: %s%s", method, team, code.name, reason[:300], more)


def _bearer(metadata: Any) -> str | None:
    return bearer_token(_metadata_value(metadata, "authorization"))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` value (gRPC metadata or HTTP header), or None.

    Example:
        >>> bearer_token("Bearer abc "), bearer_token("Basic abc"), bearer_token(None)
        ('abc', None, None)
    """
    if authorization and authorization.startswith("Bearer "):
        return authorization[len("Bearer ") :].strip()
    return None


def _metadata_value(metadata: Any, wanted: str) -> str | None:
    return next((v for k, v in metadata or () if k == wanted and isinstance(v, str)), None)


def _refuse(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that only answers ``code``."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    async def streaming(request_or_iterator: Any, context: grpc.aio.ServicerContext):
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    kwargs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, **kwargs)
    return grpc.stream_stream_rpc_method_handler(streaming, **kwargs)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates callers (when an authenticator is set) and instruments unary calls."""

    def __init__(self, authenticator: Authenticator | None = None) -> None:
        self.authenticator = authenticator
        #: Unary calls being handled; streams (health Watch) are not counted, so a drain
        #: on shutdown waits for scoring work, not for watchers that never end.
        self.in_flight = 0
        #: Unary calls answered so far (a drain reports how many it let finish).
        self.finished = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until no unary call is in flight (or ``timeout`` passes); True if drained."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def call_started(self, team_name: str) -> None:
        """Count a unary call in flight: every transport's calls, so that one drain on shutdown waits for all."""
        metrics.IN_FLIGHT.labels(team_name).inc()
        self.in_flight += 1
        self._idle.clear()

    def call_ended(self, team_name: str) -> None:
        metrics.IN_FLIGHT.labels(team_name).dec()
        self.in_flight -= 1
        self.finished += 1
        if not self.in_flight:
            self._idle.set()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        team = None
        if self.authenticator is not None and not method.startswith(OPEN_METHOD_PREFIXES):
            token = _bearer(details.invocation_metadata)
            team = self.authenticator.team_for(token) if token else None
            if team is None:
                # Never log the token itself, only that one was (or was not) sent.
                reason = "invalid bearer token" if token else "missing 'authorization: Bearer <token>' metadata"
                log_refused(method, "-", grpc.StatusCode.UNAUTHENTICATED, reason)
                metrics.REQUESTS.labels(method, grpc.StatusCode.UNAUTHENTICATED.name, "-", "grpc").inc()
                return _refuse(handler, grpc.StatusCode.UNAUTHENTICATED, reason)
        if not handler.unary_unary:
            return handler
        request_id = _metadata_value(details.invocation_metadata, "x-request-id")
        return grpc.unary_unary_rpc_method_handler(
            self._instrument(handler.unary_unary, method, team, request_id),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _instrument(self, behavior, method: str, team, request_id: str | None):
        team_name = team.name if team is not None else "-"

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            TEAM.set(team_name)
            REQUEST_ID.set(getattr(request, "request_id", "") or request_id or uuid.uuid4().hex[:16])
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            admitted = False
            self.call_started(team_name)
            try:
                if team is not None:
                    try:
                        team.limiter.acquire(team.name, len(getattr(request, "samples", ())))
                        admitted = True
                    except ResourceExhausted as exc:
                        context.set_trailing_metadata(pushback(exc))
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
                return await behavior(request, context)
            except BaseException:
                code = context.code() or grpc.StatusCode.CANCELLED
                raise
            finally:
                if admitted:
                    team.limiter.release()
                self.call_ended(team_name)
                code = context.code() or code
                if code in REFUSED:
                    log_refused(method, team_name, code, context.details() or "")
                metrics.REQUESTS.labels(method, code.name, team_name, "grpc").inc()
                metrics.LATENCY.labels(method, "grpc").observe(time.perf_counter() - start)

        return wrapper
