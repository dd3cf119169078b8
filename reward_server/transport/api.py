"""The transport-neutral API both transports call: :func:`score_message` (a ``ScoreRequest`` in, a ``ScoreResponse``
out, every check on the way), :func:`list_rewards`, and the one mapping from domain errors (``reward_server.errors``)
to status codes: :data:`STATUS_OF` (domain error → gRPC code), :data:`HTTP_STATUS` (gRPC code → HTTP status) and
:data:`FAILURE_ERROR` (a failed sample's kind → the domain error an answer that refuses it raises).

``transport.grpc_servicer`` and ``transport.http`` each import this module, and neither imports the other.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import struct_pb2

from reward.v1 import reward_pb2
from reward.values import from_value
from reward_server import __version__
from reward_server.calls import RewardCall, Samples
from reward_server.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    RewardFailed,
    RewardServiceError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from reward_server.outcomes import NoteKind
from reward_server.registry import Param, Prompt, Registry, Reward
from reward_server.reporting import report_outcomes
from reward_server.scoring import Scorer
from reward_server.settings import Limits
from reward_server.transport.interceptors import REQUEST_ID

log = logging.getLogger(__name__)

#: The one place where domain errors become gRPC status codes (both transports).
STATUS_OF: dict[type[RewardServiceError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    RewardFailed: grpc.StatusCode.INTERNAL,
}

#: gRPC code → HTTP status, as the Connect protocol maps them (connectrpc.com/docs/protocol#error-codes); the HTTP
#: transport answers every refusal through ``STATUS_OF`` then this table, so both transports agree on what an error is.
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


#: A failed sample's outcome kind → the domain error an answer that must refuse it raises (an HTTP profile's
#: ``on_failure: error``, or slime's bare number, which cannot carry a flag). NOT_APPLICABLE is no failure.
FAILURE_ERROR: dict[NoteKind, type[RewardServiceError]] = {
    NoteKind.REWARD_ERROR: RewardFailed,
    NoteKind.UNAVAILABLE: Unavailable,
    NoteKind.TIME_LIMIT: DeadlineExceeded,
}

_PARAM_TYPE = {
    str: reward_pb2.PARAM_TYPE_STRING,
    float: reward_pb2.PARAM_TYPE_NUMBER,
    bool: reward_pb2.PARAM_TYPE_BOOL,
    int: reward_pb2.PARAM_TYPE_INTEGER,
    tuple: reward_pb2.PARAM_TYPE_STRING_LIST,
}


def status_for(exc: RewardServiceError) -> grpc.StatusCode:
    """The gRPC code of a domain error (its class or nearest base in :data:`STATUS_OF`)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INVALID_ARGUMENT


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
