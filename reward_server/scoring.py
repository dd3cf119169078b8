"""The scoring engine: validates a batch against the registry, runs the rewards, adds up totals.

Transport-free: it takes plain Python values and raises the domain errors of ``errors``.
CPU rewards run in a warm executor (worker processes by default), so the event loop never
does reward work. A request's CPU rewards are cut into at most one task per free worker,
balanced by estimated cost (:func:`plan_tasks`): a task carries its samples once and scores
several rewards on them; per-sample rewards split by rows and tf-idf by reference groups, so
a large batch spreads over every worker with scores identical to an unsplit run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from reward_server.cancellation import CancelBoard
from reward_server.errors import InvalidArgument, ResourceExhausted
from reward_server.registry import BatchResult, ParamValue, Registry, Reward
from reward_server.settings import Limits
from reward_server.worker import Part, PartResult, Task, run_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RewardCall:
    """One requested reward, as the caller sent it."""

    name: str
    weight: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A validated reward call: the reward, its full params and its weight."""

    reward: Reward
    params: dict[str, ParamValue]
    weight: float


@dataclass
class RewardOutcome:
    """One reward's scores for the batch."""

    name: str
    weight: float
    scores: list[float]
    notes: dict[int, str]
    elapsed_ms: float
    #: Samples cut off by their time budget.
    timeouts: int = 0


def weighted_total(outcomes: Sequence[RewardOutcome], n_samples: int) -> list[float]:
    """Per sample: sum of weight × score over rewards, skipping NaN; NaN when every score is NaN.

    Example:
        >>> a = RewardOutcome("a", 2.0, [1.0, math.nan], {}, 0.0)
        >>> b = RewardOutcome("b", 1.0, [0.5, math.nan], {}, 0.0)
        >>> weighted_total([a, b], 2)
        [2.5, nan]
    """
    totals = []
    for i in range(n_samples):
        parts = [o.weight * o.scores[i] for o in outcomes if not math.isnan(o.scores[i])]
        totals.append(math.fsum(parts) if parts else math.nan)
    return totals


# ---------------------------------------------------------------- cutting a request into worker tasks

#: Every sample counts as this many characters on top of its own, for the per-sample overhead.
SAMPLE_CHARS = 500
#: Below this estimated cost (ms) a task is not worth its trip to another worker.
MIN_TASK_MS = 1.5
#: Cost priors in worker ms per character (see SAMPLE_CHARS) until a reward has been measured.
PRIOR_MS_PER_CHAR = {"sample": 1e-5, "group": 4e-5, "whole": 4e-5}


@dataclass(frozen=True)
class Split:
    """How a reward's work may be split across tasks without changing a score."""

    #: "sample": any rows; "group": the rows sharing a value of ``field`` stay together; "whole": never split.
    kind: Literal["sample", "group", "whole"]
    field: str = ""


def split_of(reward: Reward, params: Mapping[str, ParamValue]) -> Split:
    """How ``reward`` may be split (the registry declares it): rewards declared with ``@sample_reward``
    score each sample alone, a grouped batch reward needs each group's samples together, others run whole.

    Example:
        >>> import reward_server.rewards
        >>> from reward_server.registry import REGISTRY
        >>> [split_of(REGISTRY.get(n), REGISTRY.get(n).defaults()) for n in ("xml_integer", "tfidf_similarity")]
        [Split(kind='sample', field=''), Split(kind='group', field='answer')]
    """
    if reward.split == "group":
        return Split("group", str(params[reward.group_param]))
    return Split("sample") if reward.split == "sample" else Split("whole")


@dataclass
class Planned:
    """One task's share of the work: job index → global rows (None = every sample), and its estimated cost."""

    parts: dict[int, list[int] | None] = field(default_factory=dict)
    load: float = 0.0

    def add(self, job: int, rows: list[int] | None, cost: float) -> None:
        if rows is None or self.parts.get(job, []) is None:
            self.parts[job] = None
        else:
            self.parts.setdefault(job, []).extend(rows)  # in place: a task gets many groups
        self.load += cost


def plan_tasks(
    keys: Sequence[Sequence[Hashable] | None], rates: Sequence[float], units: Sequence[float], n_tasks: int
) -> list[Planned]:
    """Cut the jobs of a request into at most ``n_tasks`` tasks of about equal estimated cost.

    ``keys[j]`` is None for a per-sample job (its rows split anywhere), a group key per sample
    for a grouped job (a group's rows stay together), or ``[]`` for a job that runs whole.
    ``rates[j]`` is job j's estimated cost per unit and ``units[i]`` sample i's size. Indivisible
    pieces (whole jobs, groups) go largest first to the least loaded task; then the per-sample
    jobs fill every task up to the mean, in contiguous row ranges.

    Example:
        >>> tasks = plan_tasks([None, ["a", "a", "b", "b"], []], [1.0, 3.0, 0.5], [1.0] * 4, 2)
        >>> [(t.parts, t.load) for t in tasks]
        [({1: [0, 1], 2: None, 0: [0]}, 9.0), ({1: [2, 3], 0: [1, 2, 3]}, 9.0)]
    """
    everything = sum(units)
    if n_tasks <= 1 or len(units) <= 1:
        return [Planned(dict.fromkeys(range(len(keys))), sum(rates) * everything)]
    tasks = [Planned() for _ in range(n_tasks)]
    pieces: list[tuple[float, int, list[int] | None]] = []
    for job, key in enumerate(keys):
        if key is None:
            continue
        if not key:
            pieces.append((rates[job] * everything, job, None))
            continue
        groups: dict[Hashable, list[int]] = defaultdict(list)
        for i, value in enumerate(key):
            groups[value].append(i)
        pieces.extend((rates[job] * sum(units[i] for i in rows), job, rows) for rows in groups.values())
    for cost, job, rows in sorted(pieces, key=lambda piece: -piece[0]):
        min(tasks, key=lambda t: t.load).add(job, rows, cost)
    per_sample = [job for job, key in enumerate(keys) if key is None]
    if per_sample:
        rate = sum(rates[job] for job in per_sample)
        mean = (sum(t.load for t in tasks) + rate * everything) / n_tasks
        # Walk the rows task by task in the order of the first grouped job's rows, so that a task's
        # per-sample rows tend to be the rows it already holds: fewer samples to send it.
        grouped = next((job for job, key in enumerate(keys) if key), None)
        held = [t.parts.get(grouped) or [] for t in tasks] if grouped is not None else []
        order = [i for rows in held for i in rows]
        seen = set(order)
        order += [i for i in range(len(units)) if i not in seen]
        start = 0
        for k, task in enumerate(tasks):
            end, filled = start, 0.0
            want = (mean - task.load) / rate
            while end < len(order) and (filled < want or k == len(tasks) - 1):
                filled += units[order[end]]
                end += 1
            if end > start:
                for job in per_sample:
                    task.add(job, sorted(order[start:end]), rate / len(per_sample) * filled)
            start = end
    return [t for t in tasks if t.parts]


class CostModel:
    """Estimated worker milliseconds per unit (characters + SAMPLE_CHARS) for each reward, learned as it runs.

    Example:
        >>> model = CostModel()
        >>> model.rate("tfidf_similarity", "group") == PRIOR_MS_PER_CHAR["group"]
        True
        >>> model.observe("tfidf_similarity", units=1000.0, elapsed_ms=0.1)
        >>> model.observe("tfidf_similarity", units=1000.0, elapsed_ms=0.2)
        >>> round(model.rate("tfidf_similarity", "group"), 8)
        0.00013
    """

    #: Weight of the newest measurement (an exponential moving average rides out noise).
    SMOOTHING = 0.3

    def __init__(self) -> None:
        self.rates: dict[str, float] = {}

    def rate(self, name: str, kind: str) -> float:
        return max(self.rates.get(name, PRIOR_MS_PER_CHAR[kind]), 1e-9)  # never 0: the planner divides by it

    def observe(self, name: str, units: float, elapsed_ms: float) -> None:
        if units <= 0:
            return
        previous = self.rates.get(name)
        measured = elapsed_ms / units
        self.rates[name] = measured if previous is None else previous + self.SMOOTHING * (measured - previous)


class Scorer:
    """Validates and scores batches with the rewards of a registry."""

    def __init__(
        self,
        registry: Registry,
        executor: Executor,
        limits: Limits | None = None,
        cancel_board: CancelBoard | None = None,
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.limits = limits or Limits()
        self.costs = CostModel()
        #: Tasks submitted to the executor and not finished: a busy pool gets fewer, larger tasks.
        self._busy = 0
        #: Tasks submitted so far (how finely requests were cut).
        self.tasks_run = 0
        #: Shared flags that stop the workers of a cancelled call (the server's, shared with its pool).
        self.cancel_board = cancel_board

    @property
    def parallelism(self) -> int:
        """How many tasks the executor runs at once (threads share one GIL, so they count as one)."""
        if isinstance(self.executor, ProcessPoolExecutor):
            return max(1, self.executor._max_workers)
        return 1

    def plan(self, calls: Sequence[RewardCall], fields: Sequence[Mapping[str, str]]) -> list[Job]:
        """Check the whole request up front, so nothing runs for a request that will fail."""
        if not calls:
            raise InvalidArgument("rewards is empty: name at least one reward (ListRewards lists them)")
        if len(calls) > self.limits.max_rewards:
            raise ResourceExhausted(f"{len(calls)} rewards in one request; the limit is {self.limits.max_rewards}")
        if len(fields) > self.limits.max_samples:
            raise ResourceExhausted(
                f"{len(fields)} samples in one request; the limit is {self.limits.max_samples} (split the batch)"
            )
        jobs = []
        checked: set[str] = set()  # a field several rewards read is looked for once
        for index, call in enumerate(calls):
            reward = self.registry.get(call.name)
            weight = 1.0 if call.weight is None else call.weight
            if not math.isfinite(weight):
                raise InvalidArgument(f"rewards[{index}] ({reward.name}): weight must be finite, got {weight}")
            params = reward.validate_params(call.params)
            for field_name in reward.fields_read(params):
                if field_name in checked:
                    continue
                checked.add(field_name)
                missing = next((i for i, f in enumerate(fields) if field_name not in f), None)
                if missing is not None:
                    raise InvalidArgument(
                        f"samples[{missing}] has no field {field_name!r}, which reward {reward.name!r} reads"
                    )
            jobs.append(Job(reward, params, weight))
        return jobs

    async def score(
        self, completions: list[str], fields: Sequence[Mapping[str, str]], calls: Sequence[RewardCall]
    ) -> tuple[list[RewardOutcome], list[float]]:
        """Score every call over the batch; returns outcomes in request order and the totals."""
        jobs = self.plan(calls, fields)
        on_cpu = [i for i, job in enumerate(jobs) if job.reward.score_async is None]
        in_server = [i for i, job in enumerate(jobs) if job.reward.score_async is not None]
        cpu_outcomes, *server_outcomes = await asyncio.gather(
            self._run_cpu([jobs[i] for i in on_cpu], completions, fields),
            *(self._run_in_server(jobs[i], completions, fields) for i in in_server),
        )
        outcomes: list[RewardOutcome] = [None] * len(jobs)  # type: ignore[list-item]
        for i, outcome in zip([*on_cpu, *in_server], [*cpu_outcomes, *server_outcomes], strict=True):
            outcomes[i] = outcome
        return outcomes, weighted_total(outcomes, len(completions))

    async def _run_cpu(
        self, jobs: Sequence[Job], completions: list[str], fields: Sequence[Mapping[str, str]]
    ) -> list[RewardOutcome]:
        """Score the CPU jobs in the executor: one task per free worker at most, samples sent once per task."""
        if not jobs:
            return []
        columns = _field_columns(jobs, fields)
        splits = [split_of(job.reward, job.params) for job in jobs]
        keys = [None if s.kind == "sample" else columns[s.field] if s.kind == "group" else [] for s in splits]
        rates = [self.costs.rate(job.reward.name, s.kind) for job, s in zip(jobs, splits, strict=True)]
        units = [len(c) + SAMPLE_CHARS for c in completions]
        estimate = sum(rates) * sum(units)
        free = max(1, self.parallelism - self._busy)
        planned = plan_tasks(keys, rates, units, max(1, min(free, int(estimate / MIN_TASK_MS))))
        loop = asyncio.get_running_loop()
        slot = self.cancel_board.open() if self.cancel_board else None
        tasks = [_task(p, jobs, completions, columns, slot) for p in planned]
        self._busy += len(planned)
        self.tasks_run += len(planned)
        try:
            done = await asyncio.gather(*(loop.run_in_executor(self.executor, run_task, task) for task in tasks))
        except asyncio.CancelledError:
            if slot is not None:  # the workers stop at their next sample
                self.cancel_board.cancel(slot)
            raise
        finally:
            self._busy -= len(planned)
        return self._merge(jobs, planned, done, units, len(completions))

    def _merge(
        self,
        jobs: Sequence[Job],
        planned: Sequence[Planned],
        done: Sequence[list[PartResult]],
        units: Sequence[float],
        n: int,
    ) -> list[RewardOutcome]:
        outcomes = [RewardOutcome(job.reward.name, job.weight, [math.nan] * n, {}, 0.0) for job in jobs]
        for plan, results in zip(planned, done, strict=True):
            for (index, rows), part in zip(plan.parts.items(), results, strict=True):
                outcome, result = outcomes[index], part.result
                _check_length(outcome.name, result, n if rows is None else len(rows))
                rows = rows if rows is not None else range(n)
                for local, i in enumerate(rows):
                    outcome.scores[i] = result.scores[local]
                outcome.notes.update((rows[local], note) for local, note in result.notes.items())
                outcome.timeouts += result.timeouts
                outcome.elapsed_ms += part.elapsed_ms
                self.costs.observe(outcome.name, sum(units[i] for i in rows), part.elapsed_ms)
        for outcome in outcomes:
            log.debug("reward %s: %d samples, %.1f ms of worker time", outcome.name, n, outcome.elapsed_ms)
        return outcomes

    async def _run_in_server(
        self, job: Job, completions: list[str], fields: Sequence[Mapping[str, str]]
    ) -> RewardOutcome:
        """A model-backed reward: awaited in the server process, where its model lives."""
        reward = job.reward
        start = time.perf_counter()
        result = await reward.score_async(completions, reward.columns(job.params, fields), **job.params)
        elapsed_ms = (time.perf_counter() - start) * 1000
        _check_length(reward.name, result, len(completions))
        log.debug("reward %s: %d samples in %.1f ms", reward.name, len(completions), elapsed_ms)
        return RewardOutcome(reward.name, job.weight, result.scores, result.notes, elapsed_ms, result.timeouts)


def _field_columns(jobs: Sequence[Job], fields: Sequence[Mapping[str, str]]) -> dict[str, list[str]]:
    """Field name → its value per sample, for every field the jobs read.

    Equal values become one object, so that a reference repeated for every completion of a
    prompt is pickled once per task (pickle memoizes objects, not values).
    """
    columns: dict[str, list[str]] = {}
    for job in jobs:
        for name in job.reward.fields_read(job.params):
            if name not in columns:
                shared: dict[str, str] = {}
                columns[name] = [shared.setdefault(f[name], f[name]) for f in fields]
    return columns


def _task(
    planned: Planned,
    jobs: Sequence[Job],
    completions: list[str],
    columns: Mapping[str, list[str]],
    cancel_slot: int | None = None,
) -> Task:
    """The task for one plan: only the samples its parts need, with rows renumbered to match."""
    if any(rows is None for rows in planned.parts.values()):
        needed = None
    else:
        needed = sorted({i for rows in planned.parts.values() for i in rows or ()})
        if len(needed) == len(completions):
            needed = None
    if needed is None:
        parts = [Part(jobs[j].reward.name, jobs[j].params, rows) for j, rows in planned.parts.items()]
        return Task(completions, columns, parts, cancel_slot)
    local = {i: k for k, i in enumerate(needed)}
    parts = [
        Part(jobs[j].reward.name, jobs[j].params, None if rows == needed else [local[i] for i in rows or ()])
        for j, rows in planned.parts.items()
    ]
    return Task(
        [completions[i] for i in needed],
        {name: [column[i] for i in needed] for name, column in columns.items()},
        parts,
        cancel_slot,
    )


def _check_length(name: str, result: BatchResult, n: int) -> None:
    # A reward returning the wrong number of scores is a bug in the reward, never the caller's.
    if len(result.scores) != n:
        raise RuntimeError(f"reward {name} returned {len(result.scores)} scores for {n} samples")
