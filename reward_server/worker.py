"""Code that runs inside the scoring worker processes.

Workers are started once (warm) and reused: each imports the reward catalogue and, at start-up,
scores a tiny batch with every CPU reward, so that stop word lists, tf-idf analyzers, compiled
patterns and lazy imports are built before the first request instead of during it.

A request reaches a worker as one :class:`Task`: the samples it needs, sent once, and the
:class:`Part` s to score on them (a reward over all or some of those samples). See
``scoring.plan_tasks`` for how a request is cut into tasks.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Mapping, Sequence
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


def run_tasks(tasks: Sequence[Task]) -> list[list[PartResult] | Exception]:
    """Several small requests' tasks in one trip to a worker (the scorer coalesces them): each scored as
    :func:`run_task` scores it, and a task's exception returned in its place, so the others keep their scores.

    Example:
        >>> import reward_server.rewards
        >>> part = Part("xml_correctness", {"reference_field": "answer", "value": 2.0})
        >>> one = Task(["<answer>42</answer>"], {"answer": ["42"]}, [part])
        >>> [r[0].result.scores for r in run_tasks([one, one])]
        [[2.0], [2.0]]
    """
    out: list[list[PartResult] | Exception] = []
    for task in tasks:
        try:
            out.append(run_task(task))
        except Exception as exc:  # noqa: BLE001 - one request's failure (cancelled, a bad param) is its own
            out.append(exc)
    return out


def _run_part(task: Task, part: Part) -> PartResult:
    reward = current_registry().get(part.name)
    batch = _batch(reward, part, task)
    start = time.perf_counter()
    result = reward.score_batch(batch, **part.params)
    return PartResult(result, (time.perf_counter() - start) * 1000)
