"""The reward registry: maps names and aliases to reward definitions.

A reward is declared once, next to its code, with :func:`sample_reward` (a function of one
completion) or :func:`batch_reward` (a function of the whole batch, e.g. tf-idf, which fits
per group of samples). The decorators read the function's keyword-only parameters (type
hints and defaults) and its docstring (first line, ``Args:`` section) so that the code, the
``ListRewards`` catalogue and the validation of request params cannot drift apart.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reward_server import settings
from reward_server.cancellation import RequestCancelled, cancelled
from reward_server.errors import FailedPrecondition, InvalidArgument
from reward_server.sandbox import SampleTimeout, sample_budgets, time_budget

ParamValue = str | float | bool
#: Python types a reward param may have, in the order they are tried.
PARAM_TYPES: tuple[type, ...] = (bool, float, str)

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
    """Scores for a batch plus, for samples that scored NaN, the reason (index → text)."""

    scores: list[float]
    notes: dict[int, str] = field(default_factory=dict)
    #: How many samples were cut off by their time budget.
    timeouts: int = 0


@dataclass(frozen=True)
class Reward:
    """A registered reward: metadata plus the batch function that computes it."""

    name: str
    aliases: tuple[str, ...]
    description: str
    params: tuple[Param, ...]
    #: ``fn(completions, columns, **params) -> BatchResult``; columns maps each field
    #: param name (e.g. ``reference_field``) to that field's values, one per sample.
    score_batch: BatchFn
    requires_model: bool = False
    #: For model-backed rewards: ``await score_async(completions, columns, **params)``,
    #: run in the server process (the model lives there), instead of ``score_batch``.
    score_async: Callable[..., Awaitable[BatchResult]] | None = None
    #: The model id or path and the device, for model-backed rewards.
    model_id: str = ""
    device: str = ""
    #: How the batch may be cut across workers without changing a score: "sample" (each sample
    #: alone), "group" (samples sharing the value of the field named by param ``group_param``
    #: stay together), or "whole".
    split: str = "whole"
    group_param: str = ""

    @property
    def param_map(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.params}

    def fields_read(self, params: Mapping[str, ParamValue]) -> list[str]:
        """The sample fields this reward reads with the given (validated) params."""
        return [str(params[p.name]) for p in self.params if p.is_field]

    def columns(self, params: Mapping[str, ParamValue], samples: Sequence[Mapping[str, str]]) -> dict[str, list[str]]:
        """The ``columns`` that ``score_batch``/``score_async`` take: per field param, its field's value per sample."""
        return {p.name: [s[str(params[p.name])] for s in samples] for p in self.params if p.is_field}

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
        return merged


def _coerce(reward: str, param: Param, value: Any) -> ParamValue:
    """Return ``value`` as the param's type, or raise InvalidArgument naming the param."""
    ok = {
        bool: isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
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
    if param.is_field and not value:
        raise InvalidArgument(f"reward {reward!r}: param {param.name!r} must name a field")
    return value


_TYPE_NAMES = {bool: "bool", float: "number", str: "string"}


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

    def add(self, reward: Reward) -> Reward:
        for key in (reward.name, *reward.aliases):
            if key in self._names:
                raise ValueError(f"reward name {key!r} registered twice")
            self._names[key] = reward.name
        self._rewards[reward.name] = reward
        return reward

    def replace(self, reward: Reward) -> None:
        """Swap in a new implementation of an already registered reward (same names)."""
        old = self._rewards[reward.name]
        assert old.aliases == reward.aliases, "replace() must keep the names"
        self._rewards[reward.name] = reward
        self._disabled.pop(reward.name, None)

    def disable(self, name: str, how_to_enable: str) -> None:
        self._disabled[self.canonical(name)] = how_to_enable

    def unavailable_reason(self, name: str) -> str:
        return self._disabled.get(name, "")

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


#: The process-wide registry the reward modules register into.
REGISTRY = Registry()


def _doc_parts(fn: Callable) -> tuple[str, dict[str, str]]:
    """First docstring line and the ``Args:`` descriptions (Google style)."""
    doc = (inspect.getdoc(fn) or "").replace("``", "")
    summary = doc.strip().splitlines()[0] if doc.strip() else fn.__name__
    args: dict[str, str] = {}
    section = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)*)", doc, re.MULTILINE)
    if section:
        current = None
        for line in section.group(1).splitlines():
            m = re.match(r"^\s{2,8}(\w+)(?: \([^)]*\))?:\s*(.*)$", line)
            if m:
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif current and line.strip():
                args[current] += " " + line.strip()
    return summary, args


def _params_of(fn: Callable, field_params: Mapping[str, str], docs: Mapping[str, str]) -> tuple[Param, ...]:
    params = [
        Param(name, str, default, docs.get(name, f"sample field to read (default {default!r})"), is_field=True)
        for name, default in field_params.items()
    ]
    hints = inspect.get_annotations(fn, eval_str=True)
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        ptype = hints.get(p.name)
        if ptype not in PARAM_TYPES or p.default is inspect.Parameter.empty:
            raise TypeError(f"{fn.__name__}: param {p.name} needs a bool/float/str hint and a default")
        params.append(Param(p.name, ptype, p.default, docs.get(p.name, "")))
    return tuple(params)


def _register(
    fn: Callable,
    name: str,
    alias: str | Sequence[str],
    field_params: Mapping[str, str],
    batch: BatchFn,
    requires_model: bool,
    split: str,
    group_param: str = "",
) -> None:
    summary, docs = _doc_parts(fn)
    aliases = (alias,) if isinstance(alias, str) else tuple(alias)
    params = _params_of(fn, field_params, docs)
    REGISTRY.add(Reward(name, aliases, summary, params, batch, requires_model, split=split, group_param=group_param))


def _without(params: Mapping[str, ParamValue], field_params: Mapping[str, str]) -> dict[str, ParamValue]:
    # Field params only choose which column is passed; the function never sees them.
    return {k: v for k, v in params.items() if k not in field_params}


def sample_reward(name: str, *, alias: str | Sequence[str] = (), **field_params: str) -> Callable:
    """Register ``fn(completion, *field_values, **params) -> float`` as reward ``name``.

    ``field_params`` declares the fields the function reads, in positional order after the
    completion, e.g. ``reference_field="answer"``: the param ``reference_field`` (default
    ``"answer"``) names the sample field passed as the second argument. A sample whose
    function raises scores NaN, with the exception as its note.
    """

    def decorate(fn: Callable[..., float]) -> Callable[..., float]:
        def score_batch(completions: list[str], columns: Mapping[str, list[str]], **params: ParamValue) -> BatchResult:
            field_values = [columns[p] for p in field_params]
            params = _without(params, field_params)
            result = BatchResult([])
            with sample_budgets(settings.current().sample_timeout_s) as start_sample:
                for i, completion in enumerate(completions):
                    if cancelled():
                        raise RequestCancelled(f"{name}: request cancelled after {i} of {len(completions)} samples")
                    try:
                        start_sample()
                        score = fn(completion, *(col[i] for col in field_values), **params)
                        result.scores.append(float(score))
                    except SampleTimeout as exc:
                        result.scores.append(math.nan)
                        result.notes[i] = str(exc)
                        result.timeouts += 1
                    except Exception as exc:  # noqa: BLE001 - one bad sample must not fail the batch
                        result.scores.append(math.nan)
                        result.notes[i] = f"{type(exc).__name__}: {exc}"
            return result

        _register(fn, name, alias, field_params, score_batch, requires_model=False, split="sample")
        return fn

    return decorate


def batch_reward(
    name: str,
    *,
    alias: str | Sequence[str] = (),
    requires_model: bool = False,
    grouped_by: str | None = None,
    **field_params: str,
) -> Callable:
    """Register ``fn(completions, *field_columns, **params) -> list[float] | BatchResult``.

    ``grouped_by`` names a field param when a sample's score depends only on the samples that
    share its value of that field (tf-idf per reference): the server may then split the batch
    across workers by those groups.
    """

    def decorate(fn: Callable[..., list[float] | BatchResult]) -> Callable[..., list[float] | BatchResult]:
        def score_batch(completions: list[str], columns: Mapping[str, list[str]], **params: ParamValue) -> BatchResult:
            # A batch reward gets the budget of all its samples; over it, the whole batch is NaN.
            budget = settings.current().sample_timeout_s * max(1, len(completions))
            try:
                with time_budget(budget):
                    out = fn(completions, *(columns[p] for p in field_params), **_without(params, field_params))
            except SampleTimeout as exc:
                n = len(completions)
                return BatchResult([math.nan] * n, dict.fromkeys(range(n), str(exc)), timeouts=n)
            return out if isinstance(out, BatchResult) else BatchResult([float(s) for s in out])

        split = "group" if grouped_by else "whole"
        _register(fn, name, alias, field_params, score_batch, requires_model, split, grouped_by or "")
        return fn

    return decorate
