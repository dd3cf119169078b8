"""The HTTP/JSON transport: a Starlette app served by uvicorn in the server's own event loop.

Everything a call goes through is shared with the gRPC transport: the same ``Scorer`` (and so worker pool and model
batchers), the transport-neutral ``api.score_message`` with its checks, the team tokens and limits of ``auth``, the
request-id and team context of ``interceptors`` (and its in-flight count, so one drain on shutdown waits for both
transports), the request metrics (labelled ``transport="http"``) and one error mapping: every refusal is a domain
error of ``reward_server.errors``, answered through ``api.STATUS_OF`` then ``api.HTTP_STATUS``. With ``tls_cert_file``
the port serves HTTPS with gRPC's certificate and key (and requires client certificates under gRPC's client CA).

Routes:

- ``POST /reward.v1.RewardService/Score`` and ``/ListRewards``: the contract in Connect's unary protocol (JSON or
  binary protobuf bodies; errors as ``{"code": "invalid_argument", "message": ...}``; ``Connect-Timeout-Ms``).
  Implemented here rather than with the ``connectrpc`` package: its 0.13 server needs its own protobuf runtime
  (``protobuf-py``) and a Rust HTTP client (``pyqwest``) in the server, generated or hand-built endpoints, and maps
  errors with its own table, where this transport must answer through ``api.HTTP_STATUS``.
- ``POST /openrlhf/<profile>``, ``POST /slime/<profile>``, ``POST /gym/<profile>/seed_session`` and ``/verify``:
  the trainers' reward URLs (``transport.trainers``), scoring what the profile names (``transport.profiles``).
- ``GET /profiles`` lists the profiles; ``GET /healthz`` is open (no token), like gRPC health.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reward.v1 import reward_pb2
from reward_server import metrics
from reward_server.auth import Authenticator, Team
from reward_server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    RewardServiceError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from reward_server.outcomes import NoteKind
from reward_server.scoring import Scorer
from reward_server.transport import trainers
from reward_server.transport.api import FAILURE_ERROR, HTTP_STATUS, list_rewards, score_message, status_for
from reward_server.transport.interceptors import REFUSED, REQUEST_ID, TEAM, ServerInterceptor, bearer_token, log_refused
from reward_server.transport.profiles import Profile

log = logging.getLogger(__name__)

CONNECT_SERVICE = "/reward.v1.RewardService"


@dataclass
class Backend:
    """What the HTTP app shares with the gRPC server; ``scorer`` is read per call (a reload swaps it)."""

    scorer: Callable[[], Scorer]
    interceptor: ServerInterceptor
    authenticator: Authenticator | None
    profiles: Mapping[str, Profile]
    on_broken_pool: Callable[[], None]
    max_body_bytes: int
    serving: Callable[[], bool]


def error_response(code: grpc.StatusCode, message: str, retry_after_s: float | None = None) -> Response:
    """Connect's error body (``{"code": "invalid_argument", "message": ...}``) with the status of ``HTTP_STATUS``."""
    headers = {}
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return JSONResponse({"code": code.name.lower(), "message": message}, HTTP_STATUS[code], headers=headers)


def _json(value: Any, status: int = 200) -> Response:
    # allow_nan=False: a NaN is no JSON, and every trainer route has made its numbers finite before this.
    return Response(json.dumps(value, allow_nan=False), status, media_type="application/json")


def build_app(backend: Backend) -> Starlette:
    """The Starlette app of the HTTP transport over ``backend``."""
    handlers = Handlers(backend)
    routes = [
        Route("/healthz", handlers.health, methods=["GET"]),
        Route("/profiles", handlers.profiles, methods=["GET"]),
        Route(f"{CONNECT_SERVICE}/Score", handlers.connect_score, methods=["POST"]),
        Route(f"{CONNECT_SERVICE}/ListRewards", handlers.connect_list, methods=["POST"]),
        Route("/openrlhf/{profile}", handlers.openrlhf, methods=["POST"]),
        Route("/slime/{profile}", handlers.slime, methods=["POST"]),
        Route("/gym/{profile}/seed_session", handlers.gym_seed, methods=["POST"]),
        Route("/gym/{profile}/verify", handlers.gym_verify, methods=["POST"]),
    ]
    if any(p.gym_root for p in backend.profiles.values()):
        routes += [
            Route("/seed_session", handlers.gym_seed, methods=["POST"]),
            Route("/verify", handlers.gym_verify, methods=["POST"]),
        ]
    return Starlette(routes=routes)


class Handlers:
    """The route handlers; each goes through :meth:`_call` (auth, ids, limits, metrics, errors)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # -- the shared call path ---------------------------------------------------------------------------------

    async def _call(
        self, request: Request, method: str, work: Callable[[Team | None], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        team = None
        team_name = "-"
        code = grpc.StatusCode.OK
        reason = ""
        backend = self.backend
        if backend.authenticator is not None:
            token = bearer_token(request.headers.get("authorization"))
            team = backend.authenticator.team_for(token) if token else None
            if team is None:
                refused = Unauthenticated(
                    "invalid bearer token" if token else "missing 'Authorization: Bearer <token>' header"
                )
                code = status_for(refused)
                log_refused(method, "-", code, str(refused))
                metrics.REQUESTS.labels(method, code.name, "-", "http").inc()
                return error_response(code, str(refused))
            team_name = team.name
        TEAM.set(team_name)
        REQUEST_ID.set(request.headers.get("x-request-id") or uuid.uuid4().hex[:16])
        backend.interceptor.call_started(team_name)
        try:
            if not backend.serving():
                raise Unavailable("the server is shutting down; retry on another replica")
            response = await work(team)
            code = _code_of(response.status_code)
            response.headers["x-request-id"] = REQUEST_ID.get()  # as in the server's log lines
            return response
        except RewardServiceError as exc:
            code, reason = status_for(exc), str(exc)
            retry = exc.retry_after_s if isinstance(exc, ResourceExhausted) else None
            return error_response(code, reason, retry)
        except BrokenProcessPool:
            log.error("a scoring worker died; restarting the pool")
            backend.on_broken_pool()
            code = grpc.StatusCode.UNAVAILABLE
            return error_response(code, "a scoring worker died; retry the request")
        except Exception as exc:  # one broken call never stops the server
            log.exception("%s failed", method)
            code = grpc.StatusCode.INTERNAL
            return error_response(code, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            backend.interceptor.call_ended(team_name)
            if code in REFUSED:
                log_refused(method, team_name, code, reason)
            metrics.REQUESTS.labels(method, code.name, team_name, "http").inc()
            metrics.LATENCY.labels(method, "http").observe(time.perf_counter() - start)

    async def _score(
        self, score_request: reward_pb2.ScoreRequest, team: Team | None, deadline_s: float | None
    ) -> reward_pb2.ScoreResponse:
        """Score with the gRPC servicer's own path, admitted by the team's limits, within ``deadline_s``."""
        if team is not None:
            team.limiter.acquire(team.name, len(score_request.samples))
        try:
            scoring = score_message(self.backend.scorer(), score_request, "http")
            return await (asyncio.wait_for(scoring, deadline_s) if deadline_s else scoring)
        finally:
            if team is not None:
                team.limiter.release()

    async def _body(self, request: Request) -> bytes:
        limit = self.backend.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ResourceExhausted(f"request body has {declared} bytes; the limit is {limit} (max_message_bytes)")
        body = await request.body()
        if len(body) > limit:
            raise ResourceExhausted(f"request body has {len(body)} bytes; the limit is {limit} (max_message_bytes)")
        return body

    async def _json_body(self, request: Request) -> Any:
        body = await self._body(request)
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"request body is not JSON: {exc}") from None

    def _name(self, request: Request) -> str:
        """The route's profile: from the path, or the ``gym_root`` profile on the root Gym routes."""
        name = request.path_params.get("profile")
        if name is None:
            name = next(n for n, p in self.backend.profiles.items() if p.gym_root)
        return name

    def _profile(self, request: Request) -> Profile:
        name = self._name(request)
        profile = self.backend.profiles.get(name)
        if profile is None:
            known = ", ".join(sorted(self.backend.profiles)) or "none configured"
            raise NotFound(f"unknown profile {name!r}; known: {known} (GET /profiles)")
        return profile

    def _method(self, prefix: str, request: Request, suffix: str = "") -> str:
        # The profile's name only when configured: unknown names must not grow the metrics' label set.
        name = self._name(request)
        return f"{prefix}/{name if name in self.backend.profiles else '{profile}'}{suffix}"

    async def _scored(
        self, profile: Profile, trainer: str, score_request: reward_pb2.ScoreRequest, team: Team | None
    ) -> tuple[reward_pb2.ScoreResponse, list[trainers.Failure | None]]:
        """Score a trainer's samples; past the profile's deadline every sample fails with TIME_LIMIT."""
        deadline = profile.deadline(trainer)
        try:
            response = await self._score(score_request, team, deadline)
        except TimeoutError:
            n = len(score_request.samples)
            failure = trainers.Failure(NoteKind.TIME_LIMIT, f"not scored within the deadline of {deadline:g} s")
            response = reward_pb2.ScoreResponse(
                results=[reward_pb2.RewardScores(name=s.name, scores=[math.nan] * n) for s in profile.rewards],
                total=[math.nan] * n,
            )
            return response, [failure] * n
        return response, trainers.failures(response)

    @staticmethod
    def _refuse_failure(profile: Profile, failed: list[trainers.Failure | None], bare: bool = False) -> None:
        """``on_failure: error`` (or an answer that cannot carry a flag): the failure's domain error
        (``api.FAILURE_ERROR``), naming the sample."""
        first = next(((i, f) for i, f in enumerate(failed) if f is not None), None)
        if first is not None and (profile.on_failure == "error" or bare):
            i, failure = first
            raise FAILURE_ERROR[failure.kind](f"sample {i} failed ({failure.kind.label}): {failure.reason}")

    # -- routes -------------------------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        serving = self.backend.serving()
        return JSONResponse({"status": "SERVING" if serving else "NOT_SERVING"}, 200 if serving else 503)

    async def profiles(self, request: Request) -> Response:
        async def work(team: Team | None) -> Response:
            return _json({"profiles": {n: p.describe() for n, p in sorted(self.backend.profiles.items())}})

        return await self._call(request, "/profiles", work)

    async def connect_score(self, request: Request) -> Response:
        async def work(team: Team | None) -> Response:
            message = await self._connect_message(request, reward_pb2.ScoreRequest())
            if message.request_id:
                REQUEST_ID.set(message.request_id)
            timeout = request.headers.get("connect-timeout-ms")
            deadline = int(timeout) / 1000 if timeout and timeout.isdigit() else None
            try:
                response = await self._score(message, team, deadline)
            except TimeoutError:
                raise DeadlineExceeded("deadline exceeded (Connect-Timeout-Ms)") from None
            return self._connect_answer(request, response)

        return await self._call(request, f"{CONNECT_SERVICE}/Score", work)

    async def connect_list(self, request: Request) -> Response:
        async def work(team: Team | None) -> Response:
            await self._connect_message(request, reward_pb2.ListRewardsRequest())
            return self._connect_answer(request, list_rewards(self.backend.scorer().registry))

        return await self._call(request, f"{CONNECT_SERVICE}/ListRewards", work)

    async def _connect_message(self, request: Request, message: Message) -> Any:
        """Decode a Connect unary body: JSON (proto3's canonical mapping) or binary protobuf."""
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
        body = await self._body(request)
        name = message.DESCRIPTOR.full_name
        try:
            if content_type == "application/proto":
                message.ParseFromString(body)
            elif content_type == "application/json":
                json_format.Parse(body or b"{}", message)
            else:
                raise Unimplemented(f"content-type {content_type!r}: send application/json or application/proto")
        except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"request does not decode as {name}: {exc}") from None
        return message

    @staticmethod
    def _connect_answer(request: Request, message: Message) -> Response:
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if content_type == "application/proto":
            return Response(message.SerializeToString(), media_type="application/proto")
        return Response(json_format.MessageToJson(message, indent=None), media_type="application/json")

    async def openrlhf(self, request: Request) -> Response:
        async def work(team: Team | None) -> Response:
            profile = self._profile(request)
            score_request = trainers.openrlhf_request(profile, await self._json_body(request))
            if not score_request.samples:
                return _json(trainers.openrlhf_empty(profile))
            response, failed = await self._scored(profile, "openrlhf", score_request, team)
            self._refuse_failure(profile, failed)
            return _json(trainers.openrlhf_answer(profile, response, failed))

        return await self._call(request, self._method("/openrlhf", request), work)

    async def slime(self, request: Request) -> Response:
        async def work(team: Team | None) -> Response:
            profile = self._profile(request)
            score_request = trainers.slime_request(profile, await self._json_body(request))
            response, failed = await self._scored(profile, "slime", score_request, team)
            self._refuse_failure(profile, failed, bare=profile.slime_reward_key is None)
            return _json(trainers.slime_answer(profile, response, failed[0]))

        return await self._call(request, self._method("/slime", request), work)

    async def gym_seed(self, request: Request) -> Response:
        async def work(team: Team | None) -> Response:
            self._profile(request)
            return _json({})

        return await self._call(request, self._method("/gym", request, "/seed_session"), work)

    async def gym_verify(self, request: Request) -> Response:
        async def work(team: Team | None) -> Response:
            profile = self._profile(request)
            body = await self._json_body(request)
            score_request = trainers.gym_request(profile, body)
            response, failed = await self._scored(profile, "gym", score_request, team)
            self._refuse_failure(profile, failed)
            return _json(trainers.gym_answer(profile, body, response, failed[0]))

        return await self._call(request, self._method("/gym", request, "/verify"), work)


class EmbeddedServer(uvicorn.Server):
    """uvicorn in the reward server's event loop: the reward server owns the signals (SIGTERM drains both
    transports), so uvicorn installs no handlers of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start(
    app: Starlette, sock: socket.socket, grace_s: float, ssl_options: Mapping[str, Any] | None = None
) -> tuple[EmbeddedServer, asyncio.Task]:
    """Serve ``app`` on ``sock`` in this event loop (HTTPS with uvicorn's ``ssl_*`` options); returns the server
    (``should_exit = True`` stops it, letting calls in flight finish within ``grace_s``) and the task that runs it."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=grace_s,
        log_config=None,
        **(ssl_options or {}),
    )
    server = EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="http transport")
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise OSError("the HTTP transport stopped at start-up")
        await asyncio.sleep(0.01)
    return server, task


def _code_of(status: int) -> grpc.StatusCode:
    """The gRPC code a (successful or error) HTTP status stands for, for the request metrics."""
    if status < 400:
        return grpc.StatusCode.OK
    return next((code for code, http in HTTP_STATUS.items() if http == status), grpc.StatusCode.UNKNOWN)
