"""Plain Python values ↔ ``reward.v1`` messages: samples, reward specs, results. No transport here."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reward.v1 import reward_pb2 as pb
from reward.values import to_value, value_text
from trainer_client.catalogue import ParamInfo, RewardInfo, reward_info  # noqa: F401 - their old home
from trainer_client.errors import InputError
from trainer_client.outcomes import Outcome, OutcomeCounts, SampleOutcome, outcome_of, sample_outcomes

#: A chat message as TRL and the chat templates use it.
Message = Mapping[str, Any]
#: A reward as a caller names it: ``"xml_correctness"`` or ``{"name": ..., "weight": ..., "params": {...}}``.
RewardLike = str | Mapping[str, Any]


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


def prompt_messages(prompt: Sequence[Message]) -> list[pb.ChatMessage]:
    """Chat turns as ``ChatMessage`` s (multimodal contents keep their text parts)."""
    if isinstance(prompt, str):
        raise TypeError("a plain-text prompt is sent as prompt_text, not as chat turns")
    return [pb.ChatMessage(role=str(m["role"]), content=message_text(m["content"])) for m in prompt]


def set_prompt(sample: pb.Sample, prompt: Any) -> None:
    """Put ``prompt`` on ``sample`` in its true shape: text as ``prompt_text``, chat turns as ``prompt``.

    No prompt (None or absent) is an empty ``prompt_text``: the server reads a sample with neither prompt form
    as standard with an empty prompt, whatever the completion's shape (a conversation needs its turns).

    Example:
        >>> s = pb.Sample(); set_prompt(s, "2+2?"); s.prompt_text, len(s.prompt)
        ('2+2?', 0)
        >>> s = pb.Sample(); set_prompt(s, [{"role": "user", "content": "2+2?"}]); s.HasField("prompt_text")
        False
        >>> s = pb.Sample(); set_prompt(s, None); s.HasField("prompt_text"), s.prompt_text
        (True, '')
    """
    if prompt is None:
        sample.prompt_text = ""
        return
    if isinstance(prompt, str):
        sample.prompt_text = prompt
    else:
        sample.prompt.extend(prompt_messages(prompt))


def _plain(value: Any) -> Any:
    """numpy/torch scalars and arrays as Python values (``datasets`` can hand those out); the rest as it is."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) and not isinstance(value, str | bytes) else value


def set_fields(sample: pb.Sample, fields: Mapping[str, Any], index: int = 0, *, typed: bool = True) -> None:
    """Dataset columns onto ``sample``: strings in ``fields``, every other JSON value in ``typed_fields``.

    Strings stay in the string map: it is smaller on the wire and every server reads it, so a column of
    strings scores the same on servers older than ``typed_fields``. ``typed=False`` sends every value as
    its text (:func:`reward.values.value_text`), for such older servers.

    Example:
        >>> s = pb.Sample(); set_fields(s, {"answer": "4", "n": 42, "info": {"tests": [1]}})
        >>> dict(s.fields), sorted(s.typed_fields), s.typed_fields["n"].number_value
        ({'answer': '4'}, ['info', 'n'], 42.0)
        >>> s = pb.Sample(); set_fields(s, {"n": 42}, typed=False); dict(s.fields)
        {'n': '42'}
    """
    for key, value in fields.items():
        key = str(key)
        value = _plain(value)
        if isinstance(value, str):
            sample.fields[key] = value
        elif not typed:
            sample.fields[key] = value_text(value)
        else:
            try:
                sample.typed_fields[key].CopyFrom(to_value(value, repr(key)))
            except TypeError as exc:
                raise InputError(f"sample {index}: field {exc}") from None


def set_completion_ids(sample: pb.Sample, ids: Any, index: int = 0) -> None:
    """TRL's ``completion_ids`` for one sample (an empty list is sent as "no tokens", not as "not sent")."""
    ids = _plain(ids)
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise InputError(f"sample {index}: completion_ids must be a list of token ids, got {type(ids).__name__}")
    sample.completion_ids.SetInParent()
    try:
        sample.completion_ids.ids.extend(ids)
    except (TypeError, ValueError) as exc:
        raise InputError(f"sample {index}: completion_ids must be token ids (integers 0 to 2**32-1): {exc}") from None


def to_sample(sample: Mapping[str, Any], index: int = 0, *, typed: bool = True) -> pb.Sample:
    """One ``{"prompt", "completion", "fields", "completion_ids"}`` dict as a ``Sample``; bad input raises naming
    ``index``. See :func:`set_prompt`, :func:`set_fields` (``typed``) and :func:`set_completion_ids`.

    Example:
        >>> s = to_sample({"prompt": "2+2?", "completion": "4", "fields": {"answer": 4}, "completion_ids": [7]})
        >>> s.prompt_text, s.completion, dict(s.fields), s.typed_fields["answer"].number_value
        ('2+2?', '4', {}, 4.0)
        >>> list(s.completion_ids.ids)
        [7]
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
        out = pb.Sample(completion=completion_text(sample["completion"]))
        set_prompt(out, sample.get("prompt"))
    except (TypeError, KeyError, AttributeError) as exc:
        raise InputError(f"sample {index}: prompt/completion must be a string or chat messages ({exc})") from exc
    set_fields(out, fields, index, typed=typed)
    if sample.get("completion_ids") is not None:
        set_completion_ids(out, sample["completion_ids"], index)
    return out


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
    #: Extra per-sample text columns the reward logs (column name → one value per sample), for TRL's log_extra.
    extra_columns: dict[str, list[str]] = field(default_factory=dict)
    #: Sample index → what its note says the NaN means (the samples in ``notes``).
    kinds: dict[int, Outcome] = field(default_factory=dict)
    #: How many samples scored and how many ended in each kind (counted here when the server sends none).
    counts: OutcomeCounts | None = None

    def __post_init__(self) -> None:
        if self.counts is None:
            object.__setattr__(self, "counts", OutcomeCounts.of(self.outcomes))

    @property
    def outcomes(self) -> list[SampleOutcome]:
        """One outcome per sample, in request order: scored, or the kind and reason of its NaN.

        Example:
            >>> r = RewardScores("r", "r", [1.0, math.nan], 1.0, {1: "boom"}, kinds={1: Outcome.REWARD_ERROR})
            >>> [o.kind.value for o in r.outcomes], r.counts.reward_error
            (['scored', 'reward_error'], 1)
        """
        return sample_outcomes(self.scores, self.notes, self.kinds)

    def failures(self, *kinds: Outcome) -> list[tuple[int, SampleOutcome]]:
        """(index, outcome) of the samples that ended in one of ``kinds`` (default: every failed kind)."""
        wanted = kinds or tuple(k for k in Outcome if k.failed)
        return [(i, o) for i, o in enumerate(self.outcomes) if o.kind in wanted]


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
    #: Version of the reward catalogue (every reward's code) that scored the call; "" from older servers.
    catalogue_version: str = ""

    def __getitem__(self, name: str) -> list[float]:
        """Scores of the reward requested as ``name`` (or its canonical name)."""
        return self.reward(name).scores

    def reward(self, name: str) -> RewardScores:
        """Everything about the reward requested as ``name`` (or its canonical name): scores, outcomes, counts."""
        for reward in self.rewards:
            if name in (reward.requested, reward.name):
                return reward
        raise KeyError(f"no reward {name!r} in this result; have {[r.requested for r in self.rewards]}")

    def outcomes(self, name: str) -> list[SampleOutcome]:
        """Per sample, what ``name``'s score means: scored, or the kind and reason of its NaN."""
        return self.reward(name).outcomes

    @property
    def counts(self) -> dict[str, OutcomeCounts]:
        """Requested name → how many samples scored and how many ended in each kind."""
        return {r.requested: r.counts for r in self.rewards}

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
                extra_columns={c.name: list(c.values) for c in r.extra_columns},
                kinds={n.sample_index: outcome_of(n.kind) for n in r.notes},
                counts=_counts(r.counts) if r.HasField("counts") else None,
            )
            for r, asked in zip(response.results, requested, strict=True)
        ],
        total=list(response.total),
        request_id=response.request_id,
        server_version=response.server_version,
        server_ms=response.elapsed_ms,
        rtt_ms=rtt_ms,
        catalogue_version=response.catalogue_version,
    )


def _counts(counts: pb.OutcomeCounts) -> OutcomeCounts:
    return OutcomeCounts(
        scored=counts.scored,
        not_applicable=counts.not_applicable,
        reward_error=counts.reward_error,
        time_limit=counts.time_limit,
        unavailable=counts.unavailable,
    )


def nan_to_none(scores: Sequence[float]) -> list[float | None]:
    """NaN → None, the way TRL expects "this reward does not apply to this sample".

    Example:
        >>> nan_to_none([1.0, float("nan")])
        [1.0, None]
    """
    return [None if math.isnan(s) else s for s in scores]
