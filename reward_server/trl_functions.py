"""Serving plain TRL reward functions unchanged: ``f(prompts, completions, **kwargs) -> list[float | None]``.

A function is called exactly as ``GRPOTrainer._calculate_rewards`` calls it, for the samples of one
batch: ``prompts`` and ``completions`` in TRL's two shapes (plain strings for a standard dataset;
for a conversational one, the prompt's chat turns and ``[{"role": "assistant", "content": text}]``),
every sample field as a keyword holding one typed value per sample (dataset columns), plus
``trainer_state=None``, ``log_extra`` (columns for ``RewardScores.extra_columns``) and ``log_metric``
(accepted, not transported). ``completion_ids`` is passed when the function names it, and then every
sample must carry token ids. Keyword parameters with a default become the reward's params, typed
from the default; a default of None marks an optional field. A wrong result is that batch's error:
every sample scores NaN with a note saying what was wrong, never a silent 0.

A TRL function sees the whole batch, so the server never splits it across workers unless its author
says each sample's score depends on that sample alone: ``my_reward.splittable = True`` (or the
:func:`splittable` decorator, ``from reward_server import splittable``).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reward.values import value_text
from reward_server import settings
from reward_server.cancellation import RequestCancelled, cancelled
from reward_server.declare import _doc_parts
from reward_server.errors import Unavailable
from reward_server.outcomes import NoteKind, error_note, notes_for
from reward_server.registry import Batch, BatchResult, Param, ParamValue, Reward
from reward_server.time_limit import SampleTimeout, time_budget

#: Keywords TRL passes besides the dataset columns (``environments`` only with an environment factory).
TRL_KEYWORDS = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"})
#: Keywords a TRL function may take that a reward server cannot provide.
UNSERVABLE = {"environments": "TRL's environment_factory instances, which a reward server does not have"}


class Unservable(ValueError):
    """A function that cannot be served as a TRL reward; the message says why (one line)."""


def splittable(fn: Callable) -> Callable:
    """Mark a TRL reward function whose per-sample scores do not depend on the other samples of the batch,
    so the server may split a batch across workers (same as ``fn.splittable = True``).

    Example:
        >>> @splittable
        ... def short(completions, **kwargs):
        ...     return [1.0 if len(c) < 10 else 0.0 for c in completions]
        >>> short.splittable
        True
    """
    fn.splittable = True  # type: ignore[attr-defined]
    return fn


def is_trl_function(fn: Any) -> bool:
    """A public function of a plugin is a TRL reward when it takes ``completions`` or ``prompts`` (helpers do not).

    Example:
        >>> is_trl_function(lambda completions, **kw: []), is_trl_function(lambda text: text)
        (True, False)
    """
    if not inspect.isfunction(fn):
        return False
    names = inspect.signature(fn).parameters
    return "completions" in names or "prompts" in names


def _param_type(name: str, default: Any) -> tuple[type, ParamValue]:
    """A param's type from its default: bool, int, float, str, or a list/tuple of strings."""
    if isinstance(default, bool | int | float | str):
        return type(default), default
    if isinstance(default, list | tuple) and all(isinstance(v, str) for v in default):
        return tuple, tuple(default)
    raise Unservable(
        f"param {name!r} has a default of type {type(default).__name__} ({default!r:.40}); a param's default must be "
        "a bool, int, float, str or a list of strings (None marks an optional field)"
    )


def trl_reward(fn: Callable, source: str, code_version: str) -> Reward:
    """The :class:`Reward` that serves ``fn`` with TRL's calling convention; raises :class:`Unservable`.

    Example:
        >>> def exact(completions, answer, scale=1.0, **kwargs):
        ...     return [scale * (c == a) for c, a in zip(completions, answer)]
        >>> reward = trl_reward(exact, "example.py", "")
        >>> reward.name, reward.required_fields, [(p.name, p.type.__name__) for p in reward.params]
        ('exact', ('answer',), [('scale', 'float')])
        >>> reward.score_batch(Batch(["4", "5"], prompts=["2+2?", "2+2?"], fields={"answer": ["4", "4"]}), scale=2.0)
        BatchResult(scores=[2.0, 0.0], notes={}, extras={})
    """
    name = fn.__name__
    if not name.isidentifier():
        raise Unservable(f"{name} has no name to serve it under (TRL logs rewards by __name__); define it with def")
    _, docs = _doc_parts(fn)
    doc = inspect.getdoc(fn)
    description = doc.strip().splitlines()[0] if doc and doc.strip() else f"TRL reward function {name}"
    params: list[Param] = []
    required: list[str] = []
    takes: set[str] = set()
    var_keyword = False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            raise Unservable(f"takes *{p.name}; TRL passes everything by keyword")
        if p.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise Unservable(f"parameter {p.name!r} is positional-only; TRL passes everything by keyword")
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        takes.add(p.name)
        if p.name in TRL_KEYWORDS:
            continue
        if p.name in UNSERVABLE:
            if p.default is inspect.Parameter.empty:
                raise Unservable(f"needs {p.name!r} ({UNSERVABLE[p.name]})")
            continue
        if p.default is inspect.Parameter.empty:
            required.append(p.name)  # a dataset column it reads
        elif p.default is not None:
            ptype, default = _param_type(p.name, p.default)
            params.append(Param(p.name, ptype, default, docs.get(p.name, "")))
    reads = {"prompts", "fields"} | ({"completion_ids"} & takes)
    call = _caller(fn, name, None if var_keyword else frozenset(takes), {p.name for p in params})
    return Reward(
        name,
        (),
        description,
        tuple(params),
        call,
        reads=frozenset(reads),
        required_fields=tuple(required),
        source=source,
        code_version=code_version,
        split="sample" if getattr(fn, "splittable", False) is True else "whole",
        one_prompt_shape="prompts" in reads,
    )


def prompt_shape(prompt: Any) -> str:
    """ "chat", "text", or "" (an empty prompt, which fits either shape)."""
    return "chat" if isinstance(prompt, list) and prompt else "text" if isinstance(prompt, str) and prompt else ""


def mixed_shapes(prompts: Sequence[Any]) -> str:
    """Why ``prompts`` cannot go to one TRL call (they mix plain-text and chat prompts), or "".

    Example:
        >>> mixed_shapes(["Q1", [{"role": "user", "content": "Q2"}]]).split(";")[0]
        'samples[1] has a chat prompt but samples[0] has a plain-text prompt'
    """
    first: dict[str, int] = {}
    for i, prompt in enumerate(prompts):
        shape = prompt_shape(prompt)
        if shape and shape not in first:
            first[shape] = i
    if len(first) < 2:
        return ""
    (a, i), (b, j) = sorted(first.items(), key=lambda kv: kv[1])
    shape = {"chat": "a chat prompt", "text": "a plain-text prompt"}
    return (
        f"samples[{j}] has {shape[b]} but samples[{i}] has {shape[a]}; "
        "TRL passes one shape per batch: send them in separate requests"
    )


def _shapes(batch: Batch) -> tuple[list[Any], list[Any]] | str:
    """TRL's prompts and completions for the batch, or why the batch has no single shape."""
    why = mixed_shapes(batch.prompts)
    if why:
        return why
    kinds = {prompt_shape(p) for p in batch.prompts}
    if "chat" in kinds:
        prompts = [p if isinstance(p, list) else [] for p in batch.prompts]
        return prompts, [[{"role": "assistant", "content": c}] for c in batch.completions]
    prompts = [p if isinstance(p, str) else "" for p in batch.prompts] or [""] * len(batch)
    return prompts, list(batch.completions)


def _ignore_metric(name: str, value: float) -> None:
    """``log_metric``: accepted so TRL code runs, not transported (the contract has no per-batch metrics)."""


def _caller(fn: Callable, name: str, takes: frozenset[str] | None, param_names: set[str]) -> Callable[..., BatchResult]:
    is_async = inspect.iscoroutinefunction(fn)

    def score_batch(batch: Batch, **params: ParamValue) -> BatchResult:
        n = len(batch)
        if cancelled():
            raise RequestCancelled(f"{name}: request cancelled")
        shapes = _shapes(batch)
        if isinstance(shapes, str):
            return _failed(n, f"{name}: {shapes}")
        prompts, completions = shapes
        extras: dict[str, list[str]] = {}
        notes: list[str] = []

        def log_extra(column: str, values: Sequence[Any]) -> None:
            values = list(values)
            if len(values) != n:
                notes.append(f"{name}: log_extra({column!r}) got {len(values)} values for {n} completions; dropped")
                return
            extras[str(column)] = [value_text(v) for v in values]

        # Columns first, TRL's own keywords over them, params last (a param is the caller's choice).
        kwargs: dict[str, Any] = {k: list(v) for k, v in batch.fields.items() if k not in param_names}
        kwargs.update(prompts=prompts, completions=completions, trainer_state=None)
        kwargs.update(log_extra=log_extra, log_metric=_ignore_metric)
        if batch.completion_ids:
            kwargs["completion_ids"] = [list(ids) for ids in batch.completion_ids]
        if takes is not None:  # no **kwargs: pass what it names (TRL would fail on the rest)
            kwargs = {k: v for k, v in kwargs.items() if k in takes}
        kwargs.update({k: list(v) if isinstance(v, tuple) else v for k, v in params.items()})
        budget = settings.current().sample_timeout_s * max(1, n)
        try:
            if is_async:
                # wait_for bounds the awaiting; the timer (a little later) cuts off sync code inside it.
                with time_budget(budget + 1 if budget else 0):
                    out = asyncio.run(asyncio.wait_for(fn(**kwargs), budget or None))
            else:
                with time_budget(budget):
                    out = fn(**kwargs)
        except (SampleTimeout, TimeoutError):
            return _failed(n, f"{name} timed out after {budget:g} s for a batch of {n}", NoteKind.TIME_LIMIT)
        except RequestCancelled:
            raise
        except Unavailable as exc:  # what the function depends on failed: not a verdict on the completions
            return _failed(n, f"{name}: {exc}", NoteKind.UNAVAILABLE)
        except Exception as exc:  # noqa: BLE001 - the reward's bug is this batch's error, never the worker's
            return BatchResult([math.nan] * n, dict.fromkeys(range(n), error_note(exc, fn, f"{name} raised ")))
        scores = _scores(name, out, n)
        if isinstance(scores, str):
            return _failed(n, scores)
        result = BatchResult(scores, extras=extras)
        if notes:  # a dropped log_extra column: the scores stand, the note says what was lost
            result.notes = notes_for(n, "; ".join(notes), NoteKind.REWARD_ERROR)
        return result

    return score_batch


def _failed(n: int, why: str, kind: NoteKind = NoteKind.REWARD_ERROR) -> BatchResult:
    """Every sample of the batch NaN, each with the reason (by default: the function's own fault)."""
    return BatchResult([math.nan] * n, notes_for(n, why, kind))


def _scores(name: str, out: Any, n: int) -> list[float] | str:
    """TRL's result checks: one number or None per completion; otherwise what is wrong.

    Example:
        >>> _scores("f", [1, None, 0.5], 3)
        [1.0, nan, 0.5]
        >>> _scores("f", [1, "0.5"], 2)
        "f returned a str ('0.5') at index 1; a reward must be a number or None"
        >>> _scores("f", [1.0], 2)
        'f returned 1 rewards for 2 completions; TRL needs exactly one per completion'
    """
    if isinstance(out, str | bytes | Mapping) or not hasattr(out, "__iter__"):
        return f"{name} returned a {type(out).__name__}, not a list of {n} rewards"
    values = list(out)
    if len(values) != n:
        return f"{name} returned {len(values)} rewards for {n} completions; TRL needs exactly one per completion"
    scores = []
    for i, value in enumerate(values):
        if value is None:
            scores.append(math.nan)
        elif isinstance(value, numbers.Real) or (hasattr(value, "__float__") and not isinstance(value, str | bytes)):
            try:
                scores.append(float(value))
            except (TypeError, ValueError) as exc:
                return f"{name} returned {value!r:.40} at index {i}, which is not a number: {exc}"
        else:
            kind = type(value).__name__
            return f"{name} returned a {kind} ({value!r:.40}) at index {i}; a reward must be a number or None"
    return scores
