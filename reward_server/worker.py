"""Code that runs inside the scoring worker processes.

Workers are started once (warm) and reused: each imports the reward catalogue and, at start-up,
scores a tiny batch with every CPU reward, so that stop word lists, tf-idf analyzers, compiled
patterns and lazy imports are built before the first request instead of during it.

A request reaches a worker as one :class:`Task`: the samples it needs, sent once, and the
:class:`Part` s to score on them (a reward over all or some of those samples). See
``scoring.plan_tasks`` for how a request is cut into tasks.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reward_server import cancellation, settings
from reward_server.lifecycle import exit_with_parent
from reward_server.registry import REGISTRY, Batch, BatchResult, ParamValue, Prompt, Registry, Reward

log = logging.getLogger(__name__)

_WARM_TEXT = "<reasoning>\nDer Strand ist schön\n</reasoning>\n<answer>\n42\n</answer>\n</think> \\boxed{42}"


@dataclass(frozen=True)
class Part:
    """One reward over some samples of a task: ``rows`` index the task's samples (None = all of them)."""

    name: str
    params: Mapping[str, ParamValue]
    rows: Sequence[int] | None = None


@dataclass(frozen=True)
class Task:
    """What one worker call gets: the samples (completions and what the parts read of them), and the parts.

    ``fields`` holds, as text, the field columns the parts' field params name; prompts, token ids and
    the typed fields are sent only when a part's reward reads them (otherwise they stay empty).
    """

    completions: list[str]
    fields: Mapping[str, list[str]]
    parts: Sequence[Part]
    #: The request's slot on the cancel board (see ``cancellation``); None = cannot be cancelled.
    cancel_slot: int | None = None
    prompts: Sequence[Prompt] = ()
    completion_ids: Sequence[Sequence[int]] = ()
    typed_fields: Mapping[str, list[Any]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class PartResult:
    """A part's scores (one per row of the part) and the time the worker spent on it."""

    result: BatchResult
    elapsed_ms: float

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled as plain values: a one-sample request's results cross the pipe a fourth as dear as two dataclasses.
        result = self.result
        return _part_result, (result.scores, result.notes, result.extras, self.elapsed_ms)


def _part_result(
    scores: list[float], notes: dict[int, Any], extras: dict[str, list[str]], elapsed_ms: float
) -> PartResult:
    return PartResult(BatchResult(scores, notes, extras), elapsed_ms)


def init_worker(
    worker_settings: settings.WorkerSettings,
    cancel_flags: Any = None,
    warm_time_limit: bool = True,
    plugins: Sequence[Any] = (),
) -> None:
    """Pool initializer: load the catalogue (and the plugin ``Source`` s the server loaded) and warm
    what the rewards build lazily.

    ``warm_time_limit=False`` in thread mode: math time-limit helpers are per thread, so one started by the
    thread that calls this would never serve a scoring thread. A worker process exits by itself
    when the server does, SIGKILL included (``lifecycle``).
    """
    if mp.parent_process() is not None:  # a worker process, not the server's own thread pool
        exit_with_parent()
    settings.configure(worker_settings)
    cancellation.attach(cancel_flags)
    import reward_server.rewards  # noqa: F401 - registers the rewards

    if plugins:
        from reward_server.plugins import load_into

        load_into(REGISTRY, plugins)  # a failure breaks this pool: the server keeps (or never gets) it

    warm_rewards()
    if warm_time_limit:
        from reward_server.rewards.math_equiv import equivalent, warm_math_verify
        from reward_server.time_limit import run_with_timeout

        # Start this worker's math time-limit helper now: its first start imports sympy (seconds).
        run_with_timeout(equivalent, "1", "1", timeout=120, warmup=warm_math_verify)


def warm_rewards() -> None:
    """Score one tiny batch with every enabled CPU reward (defaults), so that first calls cost nothing extra."""
    from reward_server.rewards.math_checks import SANDBOXED

    for reward in REGISTRY:
        if reward.requires_model or reward.score_async is not None or REGISTRY.unavailable_reason(reward.name):
            continue  # models live in the server process
        if reward.source != "built-in":
            continue  # plugin code is never called with made-up inputs
        if reward.name in SANDBOXED:
            continue  # math-verify rewards: init_worker warms their time-limit helper (in this worker's thread)
        try:
            params = reward.defaults()
            columns = {p.name: [_WARM_TEXT, "42"] for p in reward.params if p.is_field}
            if reward.reads:
                continue  # plugins and token-id rewards: nothing of theirs is worth warming with made-up inputs
            reward.score_batch(Batch([_WARM_TEXT, "Die Antwort ist 42."], columns), **params)
        except Exception as exc:  # noqa: BLE001 - a warm-up failure must not stop the worker; the request reports it
            log.warning("warming reward %s failed: %s", reward.name, exc)


def ping(delay: float = 0.0) -> int:
    """A no-op task that makes the pool start its workers; returns the process id of the worker that ran it."""
    time.sleep(delay)
    return os.getpid()


def hello(delay: float = 0.0, names: Sequence[str] = ()) -> tuple[int, dict[str, str]]:
    """Like :func:`ping`, plus the code version this worker serves for each reward in ``names`` ("" for one it
    does not have): the server checks that its workers loaded the plugin code it did.

    Example:
        >>> import reward_server.rewards
        >>> pid, versions = hello(0.0, ["xml_tag_count", "no_such_reward"])
        >>> pid == os.getpid(), len(versions["xml_tag_count"]), versions["no_such_reward"]
        (True, 12, '')
    """
    registry = current_registry()
    return ping(delay), {n: registry.get(n).code_version if n in registry else "" for n in names}


_local = threading.local()


def use_registry(registry: Registry) -> None:
    """Thread-pool initializer (``--workers 0``): this thread scores with the server's ``registry``, so a
    reload's new thread pool serves the new code while the old pool's threads finish on the old."""
    _local.registry = registry


def current_registry() -> Registry:
    """The registry this worker scores with: its thread pool's (threads), or the process's ``REGISTRY``."""
    return getattr(_local, "registry", REGISTRY)


def _batch(reward: Reward, part: Part, task: Task) -> Batch:
    """The part's rows of the task, with what its reward reads."""
    rows = part.rows
    columns = {p.name: task.fields[str(part.params[p.name])] for p in reward.params if p.is_field}
    reads = reward.reads
    batch = Batch(
        task.completions,
        columns,
        task.prompts if "prompts" in reads else (),
        task.completion_ids if "completion_ids" in reads else (),
        task.typed_fields if "fields" in reads else {},
    )
    return batch.take(rows)


def run_task(task: Task) -> list[PartResult]:
    """Score every part of a task, in order; plain data in and out, so it pickles cheaply.

    Example:
        >>> import reward_server.rewards
        >>> task = Task(["<answer>42</answer>", "<answer>7</answer>"], {"answer": ["42", "42"]},
        ...             [Part("xml_correctness", {"reference_field": "answer", "value": 2.0}, rows=[1, 0])])
        >>> run_task(task)[0].result.scores
        [0.0, 2.0]
    """
    with cancellation.watching(task.cancel_slot):
        return [_run_part(task, part) for part in task.parts]


@dataclass(frozen=True)
class Shared:
    """Small requests' tasks with the same parts, scored as one task (the scorer coalesced them, see ``coalescing``):
    ``task`` holds their samples one request after another, ``sizes`` how many samples each request has."""

    task: Task
    sizes: Sequence[int]

    @classmethod
    def of(cls, tasks: Sequence[Task], cancel_slot: int | None = None) -> Shared:
        """One task holding ``tasks``' samples in order, with the parts of the first (all of them have the same
        parts over all their rows, and the same columns)."""
        first = tasks[0]

        def joined(column: Callable[[Task], Sequence[Any]]) -> list[Any]:
            return [value for task in tasks for value in column(task)]

        return cls(
            Task(
                joined(lambda t: t.completions),
                {name: joined(lambda t, name=name: t.fields[name]) for name in first.fields},
                first.parts,
                cancel_slot,
                joined(lambda t: t.prompts) if first.prompts else (),
                joined(lambda t: t.completion_ids) if first.completion_ids else (),
                {name: joined(lambda t, name=name: t.typed_fields[name]) for name in first.typed_fields},
            ),
            [len(task.completions) for task in tasks],
        )


def run_trip(items: Sequence[Task | Shared]) -> list[list[PartResult] | Exception]:
    """Several small requests in one trip to a worker: per request, in order, what :func:`run_task` would return
    for it alone, or the exception it would raise (so one request's failure is its own).

    Example:
        >>> import reward_server.rewards
        >>> part = Part("xml_correctness", {"reference_field": "answer", "value": 2.0})
        >>> one, two = (Task([f"<answer>{x}</answer>"], {"answer": ["42"]}, [part]) for x in (42, 7))
        >>> [r[0].result.scores for r in run_trip([Shared.of([one, two]), one])]
        [[2.0], [0.0], [2.0]]
    """
    out: list[list[PartResult] | Exception] = []
    for item in items:
        if isinstance(item, Shared):
            out.extend(_run_shared(item))
        else:
            out.append(_run_alone(item))
    return out


def _run_alone(task: Task) -> list[PartResult] | Exception:
    try:
        return run_task(task)
    except Exception as exc:  # noqa: BLE001 - one request's failure (cancelled, a bad param) is its own
        return exc


def _run_shared(shared: Shared) -> list[list[PartResult] | Exception]:
    """Each part once over every request's samples, cut back into one result per request.

    The scorer shares only per-sample rewards (a sample's score, notes and extra texts depend on that sample
    alone), so each request gets what it would alone, with two exceptions handled here: a part that raises (a
    refusal that would be one request's own) is run again for each request alone, and where a request's slice of
    an extra column is all empty, that part is run again for it alone (whether it would have the column at all
    cannot be told from the shared run). The task's cancel flag is raised only once every request has gone.
    """
    task, sizes = shared.task, shared.sizes
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    try:
        with cancellation.watching(task.cancel_slot):
            results = [_run_part(task, part) for part in task.parts]
    except cancellation.RequestCancelled as exc:
        return [exc] * len(sizes)
    except Exception:  # noqa: BLE001 - whichever request it belongs to, it must stay that request's
        return [_run_alone(_rows(task, start, size)) for start, size in zip(starts, sizes, strict=True)]
    out: list[list[PartResult] | Exception] = [[] for _ in sizes]
    for part, merged in zip(task.parts, results, strict=True):
        pieces = _cut(merged.result, starts, sizes)
        for k, piece in enumerate(pieces):
            own = out[k]
            if isinstance(own, Exception):
                continue
            if piece is None:  # an all-empty extra column: run this part for this request alone
                try:
                    alone = _rows(task, starts[k], sizes[k])
                    with cancellation.watching(task.cancel_slot):
                        own.append(_run_part(alone, part))
                except Exception as exc:  # noqa: BLE001 - this request's failure alone
                    out[k] = exc
                continue
            own.append(PartResult(piece, merged.elapsed_ms * sizes[k] / max(1, len(task.completions))))
    return out


def _cut(result: BatchResult, starts: Sequence[int], sizes: Sequence[int]) -> list[BatchResult | None]:
    """A shared part's result, cut into each request's (None where a request's extra column slice is all empty)."""
    pieces: list[BatchResult | None] = [
        BatchResult(result.scores[start : start + size]) for start, size in zip(starts, sizes, strict=True)
    ]
    for i, note in result.notes.items():
        k = bisect.bisect_right(starts, i) - 1
        pieces[k].notes[i - starts[k]] = note  # type: ignore[union-attr] - none is None yet
    for name, column in result.extras.items():
        for k, (start, size) in enumerate(zip(starts, sizes, strict=True)):
            piece = pieces[k]
            if piece is None:
                continue
            values = column[start : start + size]
            if any(values):
                piece.extras[name] = values
            else:
                pieces[k] = None
    return pieces


def _rows(task: Task, start: int, size: int) -> Task:
    """One request's task back out of a shared one."""
    end = start + size
    return Task(
        task.completions[start:end],
        {name: column[start:end] for name, column in task.fields.items()},
        task.parts,
        task.cancel_slot,
        task.prompts[start:end] if task.prompts else (),
        task.completion_ids[start:end] if task.completion_ids else (),
        {name: column[start:end] for name, column in task.typed_fields.items()},
    )


def _run_part(task: Task, part: Part) -> PartResult:
    reward = current_registry().get(part.name)
    batch = _batch(reward, part, task)
    start = time.perf_counter()
    result = reward.score_batch(batch, **part.params)
    return PartResult(result, (time.perf_counter() - start) * 1000)
