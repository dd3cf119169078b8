"""gRPC transport for ``reward.v1.RewardService``: protobuf in, scoring engine, protobuf out.

All mapping of domain errors to status codes happens here, in :data:`STATUS_OF` (domain error → gRPC code) and
:data:`HTTP_STATUS` (gRPC code → HTTP status, for the HTTP transport). :func:`score_message` is the one scoring API
of both transports: a ``ScoreRequest`` in, a ``ScoreResponse`` out, every check on the way.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError

from reward.v1 import reward_pb2, reward_pb2_grpc
from reward.values import from_value
from reward_server import __version__
from reward_server.calls import RewardCall, Samples
from reward_server.errors import (
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    RewardServiceError,
    Unavailable,
)
from reward_server.registry import Param, Prompt, Registry, Reward
from reward_server.reporting import report_outcomes
from reward_server.scoring import Scorer
from reward_server.settings import Limits
from reward_server.transport.interceptors import REQUEST_ID, pushback

log = logging.getLogger(__name__)

#: The one place where domain errors become gRPC status codes.
STATUS_OF: dict[type[RewardServiceError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}

#: gRPC code → HTTP status, as the Connect protocol maps them (connectrpc.com/docs/protocol#error-codes); the HTTP
#: transport answers every refusal through this table, so both transports agree on what an error is.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_PARAM_TYPE = {
    str: reward_pb2.PARAM_TYPE_STRING,
    float: reward_pb2.PARAM_TYPE_NUMBER,
    bool: reward_pb2.PARAM_TYPE_BOOL,
    int: reward_pb2.PARAM_TYPE_INTEGER,
    tuple: reward_pb2.PARAM_TYPE_STRING_LIST,
}

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


def status_for(exc: RewardServiceError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INVALID_ARGUMENT


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


async def score_message(
    scorer: Scorer, request: reward_pb2.ScoreRequest, transport: str = "grpc"
) -> reward_pb2.ScoreResponse:
    """Check and score one ``ScoreRequest`` with ``scorer``: the scoring API of every transport.

    Raises the domain errors of ``errors`` (mapped to a status by :func:`status_for` and :data:`HTTP_STATUS`).
    """
    start = time.perf_counter()
    check_sizes(request, scorer.limits)
    check_shapes(request)
    # The transport has chosen the id (the request's own, x-request-id metadata or header, or a new one).
    request_id = REQUEST_ID.get()
    calls = [
        RewardCall(spec.name, spec.weight if spec.HasField("weight") else None, _params(spec.params))
        for spec in request.rewards
    ]
    samples = RequestSamples(request.samples)
    catalogue_version = scorer.registry.version  # the catalogue that scores this request
    outcomes, total = await scorer.score(samples, calls)
    completions = samples.completions
    report_outcomes(outcomes, len(completions), request_id)
    elapsed_ms = (time.perf_counter() - start) * 1000
    log.info(
        "Score request_id=%s samples=%d rewards=%s transport=%s %.1f ms",
        request_id,
        len(completions),
        ",".join(o.name for o in outcomes),
        transport,
        elapsed_ms,
    )
    return reward_pb2.ScoreResponse(
        results=[
            reward_pb2.RewardScores(
                name=o.name,
                scores=o.scores,
                weight=o.weight,
                notes=[
                    reward_pb2.ScoreNote(sample_index=i, reason=note.reason, kind=int(note.kind))
                    for i, note in sorted(o.notes.items())
                ],
                elapsed_ms=o.elapsed_ms,
                extra_columns=[reward_pb2.ExtraColumn(name=k, values=v) for k, v in o.extras.items()],
                counts=reward_pb2.OutcomeCounts(**o.counts),
            )
            for o in outcomes
        ],
        total=total,
        request_id=request_id,
        server_version=__version__,
        elapsed_ms=elapsed_ms,
        catalogue_version=catalogue_version,
    )


def list_rewards(registry: Registry) -> reward_pb2.ListRewardsResponse:
    """The catalogue as ``ListRewards`` answers it (both transports)."""
    return reward_pb2.ListRewardsResponse(
        rewards=[_info(registry, r) for r in registry],
        server_version=__version__,
        catalogue_version=registry.version,
    )


def _info(registry: Registry, reward: Reward) -> reward_pb2.RewardInfo:
    reason = registry.unavailable_reason(reward.name)
    return reward_pb2.RewardInfo(
        name=reward.name,
        aliases=reward.aliases,
        description=reward.description,
        fields=reward.fields_read(reward.defaults()),
        params=[_param_info(p) for p in reward.params],
        requires_model=reward.requires_model,
        model_id=reward.model_id,
        device=reward.device,
        available=not reason,
        unavailable_reason=reason,
        source=reward.source,
        code_version=reward.code_version,
        reads_completion_ids="completion_ids" in reward.reads,
        model_revision=reward.model_revision,
        dtype=reward.dtype,
    )


class RequestSamples(Samples):
    """The samples of a ``ScoreRequest``; prompts and token ids are read from protobuf only when asked for."""

    def __init__(self, samples: Sequence[reward_pb2.Sample]) -> None:
        super().__init__([s.completion for s in samples], _fields(samples))
        self._samples = samples

    @functools.cached_property
    def prompts(self) -> list[Prompt]:  # type: ignore[override]
        return [_prompt(i, s) for i, s in enumerate(self._samples)]

    @functools.cached_property
    def completion_ids(self) -> list[list[int] | None]:  # type: ignore[override]
        return [list(s.completion_ids.ids) if s.HasField("completion_ids") else None for s in self._samples]


def _prompt(index: int, sample: reward_pb2.Sample) -> Prompt:
    """A standard prompt (``prompt_text``, or no prompt at all) as text, a conversational one as TRL's messages."""
    if sample.HasField("prompt_text") or not sample.prompt:
        return sample.prompt_text  # neither form: a standard sample with an empty prompt
    return [{"role": m.role, "content": m.content} for m in sample.prompt]


def _fields(samples: Sequence[reward_pb2.Sample]) -> Sequence[Mapping[str, object]]:
    """Per sample: its text fields and its typed fields in one mapping (protobuf maps as they are when untyped)."""
    if not any(s.typed_fields for s in samples):
        return [s.fields for s in samples]  # protobuf maps are read-only Mappings: no copy
    out = []
    for i, s in enumerate(samples):
        both = next((k for k in s.typed_fields if k in s.fields), None)
        if both is not None:
            raise InvalidArgument(f"samples[{i}]: field {both!r} is in both fields and typed_fields; send it once")
        out.append({**s.fields, **{k: from_value(v) for k, v in s.typed_fields.items()}})
    return out


def check_shapes(request: reward_pb2.ScoreRequest) -> None:
    """A sample's prompt is text or turns, never both."""
    for i, sample in enumerate(request.samples):
        if sample.HasField("prompt_text") and len(sample.prompt):
            raise InvalidArgument(f"samples[{i}]: set prompt_text (a plain prompt) or prompt (chat turns), not both")


def check_sizes(request: reward_pb2.ScoreRequest, limits: Limits) -> None:
    """Refuse oversized parts of a request with RESOURCE_EXHAUSTED naming the sample and field."""
    for i, sample in enumerate(request.samples):
        if len(sample.completion) > limits.max_completion_chars:
            raise ResourceExhausted(
                f"samples[{i}].completion has {len(sample.completion)} characters; "
                f"the limit is {limits.max_completion_chars}"
            )
        texts = [(f"fields[{k!r}]", v) for k, v in sample.fields.items()]
        texts += [(f"prompt[{j}].content", m.content) for j, m in enumerate(sample.prompt)]
        texts += [("prompt_text", sample.prompt_text)]
        for where, value in texts:
            if len(value) > limits.max_field_chars:
                raise ResourceExhausted(
                    f"samples[{i}].{where} has {len(value)} characters; the limit is {limits.max_field_chars}"
                )
        for key, typed in sample.typed_fields.items():
            # A typed value is measured in serialized bytes (about its characters as JSON).
            if typed.ByteSize() > limits.max_field_chars:
                raise ResourceExhausted(
                    f"samples[{i}].typed_fields[{key!r}] takes {typed.ByteSize()} bytes; "
                    f"the limit is {limits.max_field_chars}"
                )
    for i, spec in enumerate(request.rewards):
        if spec.params.ByteSize() > limits.max_params_bytes:
            raise ResourceExhausted(
                f"rewards[{i}] ({spec.name}): params take {spec.params.ByteSize()} bytes; "
                f"the limit is {limits.max_params_bytes}"
            )


def _params(struct: struct_pb2.Struct) -> dict:
    # Struct numbers arrive as floats (NaN/inf kept, so they can be refused by name);
    # nested lists/objects stay protobuf values and fail the param type check.
    return dict(struct.items())


def _param_info(param: Param) -> reward_pb2.ParamInfo:
    default = struct_pb2.Value()
    if param.type is bool:
        default.bool_value = bool(param.default)
    elif param.type in (float, int):
        default.number_value = float(param.default)
    elif param.type is tuple:
        default.list_value.values.extend(struct_pb2.Value(string_value=str(v)) for v in param.default)
    else:
        default.string_value = str(param.default)
    return reward_pb2.ParamInfo(
        name=param.name, type=_PARAM_TYPE[param.type], default_value=default, description=param.description
    )


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
