"""gRPC transport for ``reward.v1.RewardService``: protobuf in, the transport-neutral API (``transport.api``), protobuf
out. Domain errors become status codes through ``api.STATUS_OF``, the table the HTTP transport answers through too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from reward.v1 import reward_pb2, reward_pb2_grpc
from reward_server.errors import InvalidArgument, ResourceExhausted, RewardServiceError
from reward_server.registry import Registry
from reward_server.scoring import Scorer
from reward_server.transport.api import list_rewards, score_message, status_for
from reward_server.transport.interceptors import pushback

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Undecodable:
    """Stands in for a request whose bytes do not parse (e.g. invalid UTF-8 in a string field).

    grpcio answers a deserializer exception with UNKNOWN/INTERNAL; this lets the handler
    answer INVALID_ARGUMENT with the parser's message instead.
    """

    def __init__(self, message_type: str, error: Exception) -> None:
        self.message = f"request does not decode as {message_type}: {error}"


def _tolerant(message_class: Any) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return Undecodable(message_class.DESCRIPTOR.full_name, exc)

    return deserialize


def handles_errors(
    method: Callable[..., Awaitable[Resp]],
) -> Callable[..., Awaitable[Resp]]:
    """Turn domain errors into their status code with the message for the caller."""

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext) -> Resp:
        try:
            if isinstance(request, Undecodable):
                raise InvalidArgument(request.message)
            return await method(self, request, context)
        except RewardServiceError as exc:
            if isinstance(exc, ResourceExhausted):
                context.set_trailing_metadata(pushback(exc))
            await context.abort(status_for(exc), str(exc))
        except BrokenProcessPool:
            log.error("a scoring worker died; restarting the pool")
            self.on_broken_pool()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "a scoring worker died; retry the request")

    return wrapper


class RewardServicer(reward_pb2_grpc.RewardServiceServicer):
    """Implements Score and ListRewards on top of a :class:`Scorer`."""

    def __init__(self, scorer: Scorer, registry: Registry, on_broken_pool: Callable[[], None] = lambda: None):
        self.scorer = scorer
        self.registry = registry
        self.on_broken_pool = on_broken_pool

    @handles_errors
    async def Score(
        self, request: reward_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> reward_pb2.ScoreResponse:
        # One scorer for the whole call: a reload swaps self.scorer (registry and pool together) between calls.
        return await score_message(self.scorer, request)

    @handles_errors
    async def ListRewards(
        self, request: reward_pb2.ListRewardsRequest, context: grpc.aio.ServicerContext
    ) -> reward_pb2.ListRewardsResponse:
        return list_rewards(self.scorer.registry)


def add_to_server(servicer: RewardServicer, server: grpc.aio.Server) -> None:
    """Register the service like the generated ``add_RewardServiceServicer_to_server``, but with
    deserializers that turn undecodable bytes into INVALID_ARGUMENT instead of UNKNOWN."""
    service = reward_pb2.DESCRIPTOR.services_by_name["RewardService"]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_tolerant(getattr(reward_pb2, method.input_type.name)),
            response_serializer=getattr(reward_pb2, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
