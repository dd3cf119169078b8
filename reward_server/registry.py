"""The reward registry: maps names and aliases to reward definitions (:class:`Reward`).

Rewards are declared next to their code with the decorators of :mod:`reward_server.declare`
(``sample_reward``, ``batch_reward``), which build a :class:`Reward` from the function's
signature and docstring, so the code, the ``ListRewards`` catalogue and param validation cannot
drift apart. Plugins (:mod:`reward_server.plugins`) register into a registry the same way.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reward.values import value_text
from reward_server.errors import FailedPrecondition, InvalidArgument
from reward_server.outcomes import Note, NoteKind

ParamValue = str | float | bool | int | tuple[str, ...]
#: Python types a reward param may have (``tuple`` is a list of strings).
PARAM_TYPES: tuple[type, ...] = (bool, float, int, str, tuple)
#: A sample's prompt: plain text (a standard dataset) or chat turns (a conversational one), as TRL passes it.
Prompt = str | list[dict[str, str]]
#: What a reward may read besides its field columns: the prompts, the completions' token ids, every field typed.
READS = frozenset({"prompts", "completion_ids", "fields"})

BatchFn = Callable[..., "BatchResult"]


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a reward."""

    name: str
    type: type
    default: ParamValue
    description: str = ""
    #: True for ``*_field`` params: their value names a sample field the reward reads.
    is_field: bool = False


@dataclass
class BatchResult:
    """Scores for a batch plus, for samples that scored NaN, why (index → :class:`Note`; plain text is read as
    a not-applicable note)."""

    scores: list[float]
    notes: dict[int, Note] = field(default_factory=dict)
    #: Extra text columns the reward logs (name → one value per sample), as TRL's ``log_extra`` takes them.
    extras: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """What a reward's batch function sees of the samples it scores (all of a request, or some rows).

    Only what the reward declares it reads (``Reward.reads``) is filled in; the rest stays empty.
    """

    completions: list[str]
    #: Field param name (e.g. ``reference_field``) → that field's values as text, one per sample.
    columns: Mapping[str, list[str]] = field(default_factory=dict)
    #: Per sample: the prompt, plain text or chat turns (``reads`` "prompts").
    prompts: Sequence[Prompt] = ()
    #: Per sample: the completion's token ids (``reads`` "completion_ids").
    completion_ids: Sequence[Sequence[int]] = ()
    #: Every field of the samples, with their JSON-typed values, one per sample (``reads`` "fields").
    fields: Mapping[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.completions)

    def take(self, rows: Sequence[int] | None) -> Batch:
        """The same batch restricted to ``rows`` (None = all of them)."""
        if rows is None:
            return self
        return Batch(
            [self.completions[i] for i in rows],
            {k: [v[i] for i in rows] for k, v in self.columns.items()},
            [self.prompts[i] for i in rows] if self.prompts else (),
            [self.completion_ids[i] for i in rows] if self.completion_ids else (),
            {k: [v[i] for i in rows] for k, v in self.fields.items()},
        )


@dataclass
class SampleScore:
    """What a ``@sample_reward`` function may return instead of a bare number: the score (None = does not
    apply, NaN on the wire), extra text columns for this sample, and a note saying why it scored NaN (of
    ``kind``: not applicable unless the reward says otherwise)."""

    score: float | None
    extras: Mapping[str, str] = field(default_factory=dict)
    note: str = ""
    kind: NoteKind = NoteKind.NOT_APPLICABLE


@dataclass(frozen=True)
class Reward:
    """A registered reward: metadata plus the batch function that computes it."""

    name: str
    aliases: tuple[str, ...]
    description: str
    params: tuple[Param, ...]
    #: ``fn(batch: Batch, **params) -> BatchResult`` (see :class:`Batch`).
    score_batch: BatchFn
    requires_model: bool = False
    #: For model-backed rewards: ``await score_async(batch, **params)``, run in the server
    #: process (the model lives there), instead of ``score_batch``.
    score_async: Callable[..., Awaitable[BatchResult]] | None = None
    #: The model id or path, its revision (or content hash), device and dtype, for model-backed rewards.
    model_id: str = ""
    device: str = ""
    model_revision: str = ""
    dtype: str = ""
    #: What the reward reads besides its field columns (a subset of :data:`READS`).
    reads: frozenset[str] = frozenset()
    #: Fields every request must carry for this reward, whatever its params (plugins' named columns).
    required_fields: tuple[str, ...] = ()
    #: ``check(**params)`` raises ValueError (naming the param) for values the types allow but the reward
    #: cannot use (``ngram_size=0``); the request is then refused up front with INVALID_ARGUMENT.
    check: Callable[..., None] | None = None
    #: Where the code comes from ("built-in", a module name or a file path) and a hash of it.
    source: str = "built-in"
    code_version: str = ""
    #: How the batch may be cut across workers without changing a score: "sample" (each sample
    #: alone), "group" (samples sharing the value of the field named by param ``group_param``
    #: stay together), or "whole".
    split: str = "whole"
    group_param: str = ""
    #: True for TRL functions: TRL passes one prompt shape (plain or chat) per batch, so a request that
    #: mixes them is refused up front instead of failing every sample.
    one_prompt_shape: bool = False
    #: ``(field param name, check(value))`` pairs: ``check`` raises ValueError for a sample's value of that field the
    #: reward cannot read (a malformed test column); the request is refused up front with INVALID_ARGUMENT.
    field_checks: tuple[tuple[str, Callable[[Any], None]], ...] = ()

    @property
    def param_map(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.params}

    def fields_read(self, params: Mapping[str, ParamValue]) -> list[str]:
        """The sample fields this reward reads with the given (validated) params."""
        named = [str(params[p.name]) for p in self.params if p.is_field]
        return [*named, *(f for f in self.required_fields if f not in named)]

    def columns(self, params: Mapping[str, ParamValue], samples: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
        """The ``Batch.columns`` of ``samples``: per field param, its field's value per sample, as text."""
        return {p.name: [value_text(s[str(params[p.name])]) for s in samples] for p in self.params if p.is_field}

    def validate_params(self, given: Mapping[str, Any]) -> dict[str, ParamValue]:
        """Check ``given`` against the declared params; return them merged with defaults."""
        known = self.param_map
        merged = self.defaults()
        for key, value in given.items():
            param = known.get(key)
            if param is None:
                hint = _closest(key, known)
                raise InvalidArgument(
                    f"reward {self.name!r}: unknown param {key!r}"
                    + (f" (did you mean {hint}?)" if hint else "")
                    + f"; known params: {', '.join(sorted(known)) or 'none'}"
                )
            merged[key] = _coerce(self.name, param, value)
        if self.check is not None:
            try:
                self.check(**merged)
            except ValueError as exc:
                raise InvalidArgument(f"reward {self.name!r}: {exc}") from None
        return merged


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _coerce(reward: str, param: Param, value: Any) -> ParamValue:
    """Return ``value`` as the param's type, or raise InvalidArgument naming the param."""
    if param.type is tuple and hasattr(value, "values") and not isinstance(value, Mapping):
        value = [v.string_value if v.WhichOneof("kind") == "string_value" else v for v in value.values]
    ok = {
        bool: isinstance(value, bool),
        float: _is_number(value),
        int: _is_number(value) and math.isfinite(value) and float(value).is_integer(),
        str: isinstance(value, str),
        tuple: isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
    }[param.type]
    if not ok:
        raise InvalidArgument(
            f"reward {reward!r}: param {param.name!r} must be a {_TYPE_NAMES[param.type]}, "
            f"got {type(value).__name__} {value!r}"
        )
    if param.type is float:
        value = float(value)
        if not math.isfinite(value):
            raise InvalidArgument(f"reward {reward!r}: param {param.name!r} must be finite, got {value}")
    elif param.type is int:
        value = int(value)
    elif param.type is tuple:
        value = tuple(value)
    if param.is_field and not value:
        raise InvalidArgument(f"reward {reward!r}: param {param.name!r} must name a field")
    return value


_TYPE_NAMES = {bool: "bool", float: "number", int: "whole number", str: "string", tuple: "list of strings"}


def _closest(name: str, candidates: Sequence[str] | Mapping[str, Any]) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    return ", ".join(repr(m) for m in matches)


class Registry:
    """Canonical names and aliases → :class:`Reward`."""

    def __init__(self) -> None:
        self._rewards: dict[str, Reward] = {}
        self._names: dict[str, str] = {}  # name or alias -> canonical name
        #: Rewards that exist but are switched off, with how to switch them on.
        self._disabled: dict[str, str] = {}
        self._version: str | None = None  # computed on first use, reset by every change

    def add(self, reward: Reward) -> Reward:
        for key in (reward.name, *reward.aliases):
            if key in self._names:
                raise ValueError(f"reward name {key!r} registered twice")
            self._names[key] = reward.name
        self._rewards[reward.name] = reward
        self._version = None
        return reward

    def replace(self, reward: Reward) -> None:
        """Swap in a new implementation of an already registered reward (same names)."""
        old = self._rewards[reward.name]
        assert old.aliases == reward.aliases, "replace() must keep the names"
        self._rewards[reward.name] = reward
        self._disabled.pop(reward.name, None)
        self._version = None

    def disable(self, name: str, how_to_enable: str) -> None:
        self._disabled[self.canonical(name)] = how_to_enable

    def unavailable_reason(self, name: str) -> str:
        return self._disabled.get(name, "")

    def __contains__(self, name: object) -> bool:
        """True for a registered name or alias (enabled or not)."""
        return name in self._names

    def copy(self, drop: Iterable[str] = ()) -> Registry:
        """A new registry with the same rewards (model-bound ones as bound) and switches, less those in ``drop``.

        A reload builds its catalogue on a copy, so requests still running keep the registry they started with.
        """
        out = Registry()
        dropped = set(drop)
        for reward in self._rewards.values():
            if reward.name not in dropped:
                out.add(reward)
        out._disabled = {k: v for k, v in self._disabled.items() if k not in dropped}
        return out

    def canonical(self, name: str) -> str:
        try:
            return self._names[name]
        except KeyError:
            hint = _closest(name, self._names)
            raise InvalidArgument(
                f"unknown reward {name!r}"
                + (f"; closest known names: {hint}" if hint else "")
                + " (ListRewards lists them all)"
            ) from None

    def get(self, name: str) -> Reward:
        """The reward called ``name`` (or an alias); raises if unknown or disabled."""
        reward = self._rewards[self.canonical(name)]
        reason = self._disabled.get(reward.name)
        if reason:
            raise FailedPrecondition(f"reward {reward.name!r} is not enabled on this server: {reason}")
        return reward

    def __iter__(self):
        return iter(sorted(self._rewards.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._rewards)

    @property
    def version(self) -> str:
        """A hash of every reward's name, source and code version: changes whenever the code behind any reward does.

        Example:
            >>> Registry().version
            'e3b0c44298fc'
        """
        if self._version is None:
            digest = hashlib.sha256()
            for reward in self:
                digest.update(f"{reward.name}\0{reward.source}\0{reward.code_version}\0".encode())
            self._version = digest.hexdigest()[:12]
        return self._version


#: The process-wide registry the reward modules register into.
REGISTRY = Registry()
