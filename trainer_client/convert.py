"""Plain Python values ↔ ``reward.v1`` messages: samples, reward specs, results. No transport here."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2

from reward.v1 import reward_pb2 as pb
from trainer_client.errors import InputError

#: A chat message as TRL and the chat templates use it.
Message = Mapping[str, Any]
#: A reward as a caller names it: ``"xml_correctness"`` or ``{"name": ..., "weight": ..., "params": {...}}``.
RewardLike = str | Mapping[str, Any]


def field_text(value: Any) -> str:
    """A dataset column value as the string the service expects (``fields`` are strings on the wire).

    Example:
        >>> [field_text(v) for v in ("42", 42, 0.5, None, True, {"a": [1]})]
        ['42', '42', '0.5', '', 'True', '{"a": [1]}']
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def json_object(text: str, where: str) -> dict[str, Any]:
    """One JSON object (a JSONL line); raises InputError naming ``where`` and the problem.

    Example:
        >>> json_object('{"completion": "4"}', "line 1")
        {'completion': '4'}
        >>> json_object("[1]", "line 2")
        Traceback (most recent call last):
        ...
        trainer_client.errors.InputError: line 2: expected a JSON object, got list
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a multimodal content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type", "text") == "text")
    raise TypeError(f"content must be a string or a list of parts, got {type(content).__name__}")


def completion_text(completion: str | Sequence[Message]) -> str:
    """A completion as text: standard (a string) or conversational (the messages' contents, joined).

    Example:
        >>> completion_text([{"role": "assistant", "content": "<answer>4</answer>"}])
        '<answer>4</answer>'
    """
    if isinstance(completion, str):
        return completion
    return "".join(message_text(m["content"]) for m in completion)


def prompt_messages(prompt: str | Sequence[Message]) -> list[pb.ChatMessage]:
    """A prompt as chat turns; a plain-text prompt is one ``user`` turn."""
    if isinstance(prompt, str):
        return [pb.ChatMessage(role="user", content=prompt)]
    return [pb.ChatMessage(role=str(m["role"]), content=message_text(m["content"])) for m in prompt]


def to_sample(sample: Mapping[str, Any], index: int = 0) -> pb.Sample:
    """One ``{"prompt", "completion", "fields"}`` dict as a ``Sample``; a malformed one raises naming ``index``.

    Example:
        >>> s = to_sample({"prompt": "2+2?", "completion": "4", "fields": {"answer": 4}})
        >>> s.prompt[0].role, s.completion, dict(s.fields)
        ('user', '4', {'answer': '4'})
    """
    if not isinstance(sample, Mapping):
        raise InputError(
            f"sample {index}: expected an object with prompt/completion/fields, got {type(sample).__name__}"
        )
    if "completion" not in sample:
        raise InputError(f"sample {index}: no 'completion'")
    fields = sample.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise InputError(f"sample {index}: 'fields' must be an object of column → value, got {type(fields).__name__}")
    try:
        return pb.Sample(
            prompt=prompt_messages(sample.get("prompt") or []),
            completion=completion_text(sample["completion"]),
            fields={str(k): field_text(v) for k, v in fields.items()},
        )
    except (TypeError, KeyError, AttributeError) as exc:
        raise InputError(f"sample {index}: prompt/completion must be a string or chat messages ({exc})") from exc


def reward_spec(reward: RewardLike, index: int = 0) -> pb.RewardSpec:
    """A reward name or ``{"name", "weight", "params"}`` dict as a ``RewardSpec``.

    Example:
        >>> spec = reward_spec({"name": "xml_correctness", "weight": 0.5, "params": {"value": 3}})
        >>> spec.name, spec.weight, dict(spec.params)
        ('xml_correctness', 0.5, {'value': 3.0})
    """
    if isinstance(reward, str):
        return pb.RewardSpec(name=reward)
    if not isinstance(reward, Mapping) or not isinstance(reward.get("name"), str) or not reward["name"]:
        raise InputError(f"rewards[{index}]: expected a name or an object with a 'name', got {reward!r}")
    unknown = set(reward) - {"name", "weight", "params"}
    if unknown:
        raise InputError(f"rewards[{index}] ({reward['name']}): unknown keys {sorted(unknown)}; use name/weight/params")
    spec = pb.RewardSpec(name=reward["name"])
    if reward.get("weight") is not None:
        weight = reward["weight"]
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InputError(f"rewards[{index}] ({reward['name']}): weight must be a number, got {weight!r}")
        spec.weight = float(weight)
    params = reward.get("params") or {}
    if not isinstance(params, Mapping):
        raise InputError(f"rewards[{index}] ({reward['name']}): params must be an object, got {params!r}")
    spec.params.update(dict(params))
    return spec


def reward_name(reward: RewardLike) -> str:
    """The name a caller gave a reward (an alias stays an alias)."""
    return reward if isinstance(reward, str) else str(reward["name"])


@dataclass(frozen=True)
class RewardScores:
    """One reward's scores for a batch."""

    #: Canonical name (the server resolves aliases).
    name: str
    #: The name as requested (may be an alias such as ``correctness_reward_func``).
    requested: str
    #: One score per sample, in request order; NaN where the reward does not apply.
    scores: list[float]
    weight: float
    #: Sample index → why that sample scored NaN.
    notes: dict[int, str] = field(default_factory=dict)
    #: Server wall time spent on this reward.
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class ScoreResult:
    """The answer to one Score call: per-reward scores (NaN where not applicable) and weighted totals."""

    rewards: list[RewardScores]
    #: Per sample: sum of weight × score over rewards, skipping NaN; NaN if all are NaN.
    total: list[float]
    request_id: str
    server_version: str
    #: Server wall time of the whole call.
    server_ms: float
    #: Client-side round trip, retries included.
    rtt_ms: float

    def __getitem__(self, name: str) -> list[float]:
        """Scores of the reward requested as ``name`` (or its canonical name)."""
        for reward in self.rewards:
            if name in (reward.requested, reward.name):
                return reward.scores
        raise KeyError(f"no reward {name!r} in this result; have {[r.requested for r in self.rewards]}")

    @property
    def names(self) -> list[str]:
        return [r.requested for r in self.rewards]

    def as_dict(self) -> dict[str, list[float]]:
        """Requested name → scores."""
        return {r.requested: r.scores for r in self.rewards}


def from_response(response: pb.ScoreResponse, requested: Sequence[str], rtt_ms: float) -> ScoreResult:
    """A ``ScoreResponse`` as a :class:`ScoreResult`, keeping the names the caller used."""
    if len(response.results) != len(requested):
        raise ValueError(f"the server answered {len(response.results)} rewards for {len(requested)} requested")
    return ScoreResult(
        rewards=[
            RewardScores(
                name=r.name,
                requested=asked,
                scores=list(r.scores),
                weight=r.weight,
                notes={n.sample_index: n.reason for n in r.notes},
                elapsed_ms=r.elapsed_ms,
            )
            for r, asked in zip(response.results, requested, strict=True)
        ],
        total=list(response.total),
        request_id=response.request_id,
        server_version=response.server_version,
        server_ms=response.elapsed_ms,
        rtt_ms=rtt_ms,
    )


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a reward, as ListRewards describes it."""

    name: str
    type: str  # "string", "number" or "bool"
    default: Any
    description: str


@dataclass(frozen=True)
class RewardInfo:
    """One reward of the server's catalogue."""

    name: str
    aliases: list[str]
    description: str
    #: Sample fields the reward reads with default params (a ``*_field`` param renames them).
    fields: list[str]
    params: list[ParamInfo]
    requires_model: bool
    model_id: str
    device: str
    available: bool
    unavailable_reason: str

    def fields_read(self, params: Mapping[str, Any] | None = None) -> list[str]:
        """The fields read with ``params``: defaults, with ``*_field`` params applied.

        Example:
            >>> info = RewardInfo("r", [], "", ["answer"], [ParamInfo("reference_field", "string", "answer", "")],
            ...                   False, "", "", True, "")
            >>> info.fields_read({"reference_field": "solution"})
            ['solution']
        """
        params = params or {}
        return [
            str(params.get(p.name, p.default)) for p in self.params if p.name.endswith("_field") and p.type == "string"
        ]


_TYPE_NAMES = {pb.PARAM_TYPE_STRING: "string", pb.PARAM_TYPE_NUMBER: "number", pb.PARAM_TYPE_BOOL: "bool"}


def _value(v: struct_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    return None if kind in (None, "null_value") else getattr(v, kind)


def reward_info(info: pb.RewardInfo) -> RewardInfo:
    """A ``RewardInfo`` message as a plain dataclass."""
    return RewardInfo(
        name=info.name,
        aliases=list(info.aliases),
        description=info.description,
        fields=list(info.fields),
        params=[
            ParamInfo(p.name, _TYPE_NAMES.get(p.type, "unspecified"), _value(p.default_value), p.description)
            for p in info.params
        ],
        requires_model=info.requires_model,
        model_id=info.model_id,
        device=info.device,
        available=info.available,
        unavailable_reason=info.unavailable_reason,
    )


def nan_to_none(scores: Sequence[float]) -> list[float | None]:
    """NaN → None, the way TRL expects "this reward does not apply to this sample".

    Example:
        >>> nan_to_none([1.0, float("nan")])
        [1.0, None]
    """
    return [None if math.isnan(s) else s for s in scores]
