"""Declaring rewards: the ``@sample_reward`` and ``@batch_reward`` decorators (public API).

A reward is declared once, next to its code, with :func:`sample_reward` (a function of one
completion) or :func:`batch_reward` (a function of the whole batch, e.g. tf-idf, which fits
per group of samples). The decorators read the function's keyword-only parameters (type
hints and defaults) and its docstring (first line, ``Args:`` section) so that the code, the
``ListRewards`` catalogue and the validation of request params cannot drift apart.

Plugin modules use the same decorators (``from reward_server import sample_reward``); while
a plugin imports, :func:`registering_into` points them at the plugin's registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from reward_server import settings
from reward_server.cancellation import RequestCancelled, cancelled
from reward_server.errors import RewardServiceError, Unavailable
from reward_server.outcomes import Note, NoteKind, error_note, notes_for
from reward_server.registry import (
    PARAM_TYPES,
    READS,
    REGISTRY,
    Batch,
    BatchFn,
    BatchResult,
    Param,
    ParamValue,
    Registry,
    Reward,
    SampleScore,
)
from reward_server.time_limit import SampleTimeout, sample_budgets, time_budget

_target: Registry = REGISTRY


@contextlib.contextmanager
def registering_into(registry: Registry) -> Iterator[Registry]:
    """Make the decorators register into ``registry`` for the duration (a plugin's import)."""
    global _target
    previous, _target = _target, registry
    try:
        yield registry
    finally:
        _target = previous


def code_version(path: str | Path) -> str:
    """A short content hash of a source file (what ``RewardInfo.code_version`` reports)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def origin_of(fn: Callable) -> tuple[str, str]:
    """``(source, code_version)`` of a function: "built-in" for the server's own rewards, else its module."""
    module = sys.modules.get(fn.__module__)
    path = getattr(module, "__file__", None) or inspect.getsourcefile(fn) or ""
    source = "built-in" if fn.__module__.startswith("reward_server.") else fn.__module__
    return source, code_version(path) if path and Path(path).is_file() else ""


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


#: Type hints a declared param may carry, and the Python type it is validated as.
_HINTS: dict[Any, type] = {bool: bool, float: float, int: int, str: str, tuple[str, ...]: tuple}


def _params_of(fn: Callable, field_params: Mapping[str, str], docs: Mapping[str, str]) -> tuple[Param, ...]:
    params = [
        Param(name, str, default, docs.get(name, f"sample field to read (default {default!r})"), is_field=True)
        for name, default in field_params.items()
    ]
    hints = inspect.get_annotations(fn, eval_str=True)
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.name in READS:
            continue
        ptype = _HINTS.get(hints.get(p.name))
        if ptype not in PARAM_TYPES or p.default is inspect.Parameter.empty:
            raise TypeError(
                f"{fn.__name__}: param {p.name} needs a bool/float/int/str/tuple[str, ...] hint and a default"
            )
        params.append(Param(p.name, ptype, p.default, docs.get(p.name, "")))
    return tuple(params)


def _check_reads(name: str, reads: Sequence[str]) -> frozenset[str]:
    unknown = set(reads) - READS
    if unknown:
        raise ValueError(f"reward {name}: reads {sorted(unknown)}; known: {sorted(READS)}")
    return frozenset(reads)


def _register(fn: Callable, name: str, alias: str | Sequence[str], field_params: Mapping[str, str], **kw: Any) -> None:
    summary, docs = _doc_parts(fn)
    aliases = (alias,) if isinstance(alias, str) else tuple(alias)
    source, version = origin_of(fn)
    params = _params_of(fn, field_params, docs)
    _target.add(Reward(name, aliases, summary, params, source=source, code_version=version, **kw))
    # Marks the function as declared, so a plugin's TRL-function discovery does not serve it a second time.
    with contextlib.suppress(AttributeError, TypeError):
        fn.__reward_name__ = name  # type: ignore[attr-defined]


def _without(params: Mapping[str, ParamValue], field_params: Mapping[str, str]) -> dict[str, ParamValue]:
    # Field params only choose which column is passed; the function never sees them.
    return {k: v for k, v in params.items() if k not in field_params}


def _read_kwargs(batch: Batch, reads: frozenset[str], i: int | None = None) -> dict[str, Any]:
    """The keyword arguments a function gets for what it reads: the whole batch's, or sample ``i``'s."""
    out: dict[str, Any] = {}
    if "prompts" in reads:
        out["prompts" if i is None else "prompt"] = batch.prompts if i is None else batch.prompts[i]
    if "completion_ids" in reads:
        out["completion_ids"] = batch.completion_ids if i is None else batch.completion_ids[i]
    if "fields" in reads:
        out["fields"] = batch.fields if i is None else {k: v[i] for k, v in batch.fields.items()}
    return out


def sample_reward(
    name: str,
    *,
    alias: str | Sequence[str] = (),
    reads: Sequence[str] = (),
    check: Callable[..., None] | None = None,
    check_fields: Mapping[str, Callable[[Any], None]] | None = None,
    own_time_limits: bool = False,
    **field_params: str,
) -> Callable:
    """Register ``fn(completion, *field_values, **params) -> float | None | SampleScore`` as reward ``name``.

    ``own_time_limits=True`` says the function bounds each sample's time itself, by its params (the code
    rewards: a limit per test and a wall-clock kill of the sandbox), so the server's ``sample_timeout_s`` does
    not cut it off: a program that loops forever must score its time-limit verdict, not a NaN that spares it
    the penalty.

    ``field_params`` declares the fields the function reads, in positional order after the
    completion, e.g. ``reference_field="answer"``: the param ``reference_field`` (default
    ``"answer"``) names the sample field passed as the second argument. ``reads`` adds keyword
    arguments for this sample: ``prompt``, ``completion_ids`` (its token ids), ``fields`` (all,
    typed). None means "does not apply" (NaN on the wire, TRL's None). A sample whose function
    raises scores NaN, with the exception as its note. ``check(**params)`` raises ValueError for
    param values the reward cannot use: the request is refused before anything runs.
    ``check_fields`` maps a field param to ``check(value)``, which raises ValueError for a sample
    value the reward cannot read: the request is refused up front, naming the sample.
    """
    wanted = _check_reads(name, reads)
    field_checks = tuple((check_fields or {}).items())
    unknown = {param for param, _ in field_checks} - set(field_params)
    if unknown:
        raise ValueError(f"reward {name}: check_fields names {sorted(unknown)}, which are not its field params")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        def score_batch(batch: Batch, **params: ParamValue) -> BatchResult:
            field_values = [batch.columns[p] for p in field_params]
            params = _without(params, field_params)
            result = BatchResult([])
            n = len(batch)
            budget = None if own_time_limits else settings.current().sample_timeout_s
            with sample_budgets(budget) as start_sample:
                for i, completion in enumerate(batch.completions):
                    if cancelled():
                        raise RequestCancelled(f"{name}: request cancelled after {i} of {n} samples")
                    try:
                        start_sample()
                        out = fn(
                            completion, *(col[i] for col in field_values), **params, **_read_kwargs(batch, wanted, i)
                        )
                        if isinstance(out, SampleScore):
                            for key, text in out.extras.items():
                                result.extras.setdefault(key, [""] * n)[i] = str(text)
                            if out.note:
                                result.notes[i] = Note(out.note, out.kind)
                            out = out.score
                        result.scores.append(math.nan if out is None else float(out))
                    except SampleTimeout as exc:
                        result.scores.append(math.nan)
                        result.notes[i] = Note(str(exc), NoteKind.TIME_LIMIT)
                    except Unavailable as exc:  # what the reward depends on failed: not a verdict on the sample
                        result.scores.append(math.nan)
                        result.notes[i] = Note(f"{name}: {exc}", NoteKind.UNAVAILABLE)
                    except Exception as exc:  # noqa: BLE001 - one bad sample must not fail the batch
                        result.scores.append(math.nan)
                        result.notes[i] = error_note(exc, fn)
            return result

        _register(
            fn,
            name,
            alias,
            field_params,
            score_batch=score_batch,
            split="sample",
            reads=wanted,
            check=check,
            field_checks=field_checks,
        )
        return fn

    return decorate


def batch_reward(
    name: str,
    *,
    alias: str | Sequence[str] = (),
    requires_model: bool = False,
    grouped_by: str | None = None,
    reads: Sequence[str] = (),
    check: Callable[..., None] | None = None,
    **field_params: str,
) -> Callable:
    """Register ``fn(completions, *field_columns, **params) -> list[float | None] | BatchResult``.

    ``grouped_by`` names a field param when a sample's score depends only on the samples that
    share its value of that field (tf-idf per reference): the server may then split the batch
    across workers by those groups. Without it the batch is never split. ``reads`` adds keyword
    arguments for the whole batch: ``prompts``, ``completion_ids``, ``fields``.
    """
    wanted = _check_reads(name, reads)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        def score_batch(batch: Batch, **params: ParamValue) -> BatchResult:
            # A batch reward gets the budget of all its samples; over it, the whole batch is NaN.
            n = len(batch)
            budget = settings.current().sample_timeout_s * max(1, n)
            columns = (batch.columns[p] for p in field_params)
            try:
                with time_budget(budget):
                    out = fn(
                        batch.completions, *columns, **_without(params, field_params), **_read_kwargs(batch, wanted)
                    )
            except SampleTimeout as exc:
                return BatchResult([math.nan] * n, notes_for(n, str(exc), NoteKind.TIME_LIMIT))
            except Unavailable as exc:  # what the reward depends on failed: every sample NaN, none of them a 0
                return BatchResult([math.nan] * n, notes_for(n, f"{name}: {exc}", NoteKind.UNAVAILABLE))
            except (RequestCancelled, RewardServiceError):
                raise  # the request's fate (cancelled, or refused with its status), not this batch's
            except Exception as exc:  # noqa: BLE001 - the reward's bug is this batch's error, never the worker's
                note = error_note(exc, fn)
                return BatchResult([math.nan] * n, dict.fromkeys(range(n), note))
            if isinstance(out, BatchResult):
                return out
            return BatchResult([math.nan if s is None else float(s) for s in out])

        split = "group" if grouped_by else "whole"
        batch: BatchFn = score_batch
        _register(
            fn,
            name,
            alias,
            field_params,
            score_batch=batch,
            requires_model=requires_model,
            split=split,
            group_param=grouped_by or "",
            reads=wanted,
            check=check,
        )
        return fn

    return decorate
