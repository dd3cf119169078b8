"""The scoring engine: validates a batch against the registry, runs the rewards, adds up totals.

Transport-free: it takes plain Python values and raises the domain errors of ``errors``.
CPU rewards run in a warm executor (worker processes by default), so the event loop never
does reward work. A request's CPU rewards are cut into at most one task per free worker,
balanced by estimated cost (:func:`plan_tasks`): a task carries its samples once and scores
several rewards on them; per-sample rewards split by rows and tf-idf by reference groups, so
a large batch spreads over every worker with scores identical to an unsplit run. A small request's one task
waits briefly to share a worker trip with other small requests instead (``coalescing``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from reward.values import value_text
from reward_server.calls import Job, RewardCall, RewardOutcome, Samples, weighted_total
from reward_server.cancellation import CancelBoard
from reward_server.coalescing import COALESCE_MAX_SAMPLES, Coalescer, share_key
from reward_server.errors import InvalidArgument, PassFailed, ResourceExhausted, RewardServiceError
from reward_server.outcomes import NoteKind, as_note, notes_for
from reward_server.planning import MIN_TASK_MS, SAMPLE_CHARS, CostModel, Planned, plan_tasks
from reward_server.registry import Batch, BatchResult, Registry, Reward
from reward_server.settings import Limits
from reward_server.trl_functions import mixed_shapes
from reward_server.worker import Part, PartResult, Task, run_task

log = logging.getLogger(__name__)


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
        #: Tasks submitted so far (how finely requests were cut).
        self.tasks_run = 0
        #: Shared flags that stop the workers of a cancelled call (the server's, shared with its pool).
        self.cancel_board = cancel_board
        # Every thread of a thread pool counts as a slot here (unlike for planning): a reward waiting on I/O (a
        # sandbox, a judge) releases the GIL, so trips on several threads still overlap.
        slots = max(1, getattr(executor, "_max_workers", 1))
        #: Small requests wait here to share worker trips; it also counts every task the pool runs, so a busy
        #: pool gets fewer, larger tasks.
        self.coalescer = Coalescer(lambda: self.executor, slots, cancel_board)
        #: Score calls running on this scorer: a reload shuts the old pool down once this is 0.
        self.active = 0
        #: Reward specs validated before (see :func:`_specs_key`) → their jobs: only the samples are checked again.
        self._jobs: dict[tuple, tuple[Job, ...]] = {}

    @property
    def parallelism(self) -> int:
        """How many tasks the executor runs at once (threads share one GIL, so they count as one)."""
        if isinstance(self.executor, ProcessPoolExecutor):
            return max(1, self.executor._max_workers)
        return 1

    def plan(self, calls: Sequence[RewardCall], samples: Samples) -> list[Job]:
        """Check the whole request up front, so nothing runs for a request that will fail."""
        fields = samples.fields
        if not calls:
            raise InvalidArgument("rewards is empty: name at least one reward (ListRewards lists them)")
        if len(calls) > self.limits.max_rewards:
            raise ResourceExhausted(f"{len(calls)} rewards in one request; the limit is {self.limits.max_rewards}")
        if len(fields) > self.limits.max_samples:
            raise ResourceExhausted(
                f"{len(fields)} samples in one request; the limit is {self.limits.max_samples} (split the batch)"
            )
        key = _specs_key(calls)
        known = self._jobs.get(key) if key is not None else None
        jobs = []
        checked: set[str] = set()  # a field several rewards read is looked for once
        for index, call in enumerate(calls):
            job = known[index] if known is not None else self._job(index, call)
            reward, params = job.reward, job.params
            for field_name in job.fields:
                if field_name in checked:
                    continue
                checked.add(field_name)
                missing = next((i for i, f in enumerate(fields) if field_name not in f), None)
                if missing is not None:
                    raise InvalidArgument(
                        f"samples[{missing}] has no field {field_name!r}, which reward {reward.name!r} reads"
                    )
            for param_name, check_value in reward.field_checks:
                field_name = str(params[param_name])
                check_key = f"{field_name}\0{id(check_value)}"  # two rewards sharing a check run it once
                if check_key not in checked:
                    checked.add(check_key)
                    _check_values(reward.name, field_name, check_value, fields)
            if reward.one_prompt_shape and "prompt shape" not in checked:
                checked.add("prompt shape")
                why = mixed_shapes(samples.prompts)
                if why:
                    raise InvalidArgument(f"reward {reward.name!r} is a TRL function: {why}")
            if "completion_ids" in reward.reads and "completion_ids" not in checked:
                checked.add("completion_ids")
                missing = next((i for i, ids in enumerate(samples.completion_ids) if ids is None), None)
                if missing is not None:
                    raise InvalidArgument(
                        f"samples[{missing}] has no completion_ids, which reward {reward.name!r} reads "
                        "(send each completion's token ids, as TRL passes them)"
                    )
            jobs.append(job)
        if known is None and key is not None:
            if len(self._jobs) >= MAX_KNOWN_SPECS:
                self._jobs.clear()
            self._jobs[key] = tuple(jobs)
        return jobs

    def _job(self, index: int, call: RewardCall) -> Job:
        """One reward spec checked against the registry: the reward, its params merged with defaults, its weight."""
        reward = self.registry.get(call.name)
        weight = 1.0 if call.weight is None else call.weight
        if not math.isfinite(weight):
            raise InvalidArgument(f"rewards[{index}] ({reward.name}): weight must be finite, got {weight}")
        return Job(reward, reward.validate_params(call.params), weight)

    async def score(self, samples: Samples, calls: Sequence[RewardCall]) -> tuple[list[RewardOutcome], list[float]]:
        """Score every call over the batch; returns outcomes in request order and the totals."""
        self.active += 1  # before the first await: a reload sees this call before it can retire the pool
        try:
            return await self._score(samples, calls)
        finally:
            self.active -= 1

    async def _score(self, samples: Samples, calls: Sequence[RewardCall]) -> tuple[list[RewardOutcome], list[float]]:
        jobs = self.plan(calls, samples)
        in_server = [i for i, job in enumerate(jobs) if job.reward.score_async is not None]
        if not in_server:  # CPU rewards only: no task to gather
            outcomes = await self._run_cpu(jobs, samples)
            return outcomes, weighted_total(outcomes, len(samples))
        on_cpu = [i for i, job in enumerate(jobs) if job.reward.score_async is None]
        cpu_outcomes, *server_outcomes = await asyncio.gather(
            self._run_cpu([jobs[i] for i in on_cpu], samples),
            *(self._run_in_server(jobs[i], samples) for i in in_server),
        )
        outcomes: list[RewardOutcome] = [None] * len(jobs)  # type: ignore[list-item]
        for i, outcome in zip([*on_cpu, *in_server], [*cpu_outcomes, *server_outcomes], strict=True):
            outcomes[i] = outcome
        return outcomes, weighted_total(outcomes, len(samples))

    async def _run_cpu(self, jobs: Sequence[Job], samples: Samples) -> list[RewardOutcome]:
        """Score the CPU jobs in the executor: one task per free worker at most, samples sent once per task."""
        if not jobs:
            return []
        completions = samples.completions
        columns = _field_columns(jobs, samples.fields)
        splits = [job.split for job in jobs]
        keys = [None if s.kind == "sample" else columns[s.field] if s.kind == "group" else [] for s in splits]
        rates = [self.costs.rate(job.reward.name, s.kind) for job, s in zip(jobs, splits, strict=True)]
        units = [len(c) + SAMPLE_CHARS for c in completions]
        estimate = sum(rates) * sum(units)
        coalescer = self.coalescer
        free = max(1, self.parallelism - coalescer.in_flight())
        planned = plan_tasks(keys, rates, units, max(1, min(free, int(estimate / MIN_TASK_MS))))
        loop = asyncio.get_running_loop()
        slot = self.cancel_board.open() if self.cancel_board else None
        whole = _task_inputs(jobs, samples, columns)
        tasks = [_task(p, jobs, whole, slot) for p in planned]
        self.tasks_run += len(planned)
        try:
            if len(tasks) == 1 and len(completions) <= COALESCE_MAX_SAMPLES:
                key = share_key(jobs, tasks[0])
                done = [await coalescer.score(tasks[0], key, len(completions), estimate)]
            else:
                coalescer.others += len(planned)
                try:
                    done = await asyncio.gather(
                        *(loop.run_in_executor(self.executor, run_task, task) for task in tasks)
                    )
                finally:
                    coalescer.others -= len(planned)
                    coalescer.wake()  # workers freed: small requests waiting behind this one go now
        except asyncio.CancelledError:
            if slot is not None:  # the workers stop at their next sample
                self.cancel_board.cancel(slot)
            raise
        return self._merge(jobs, planned, done, units, len(completions))

    def _merge(
        self,
        jobs: Sequence[Job],
        planned: Sequence[Planned],
        done: Sequence[list[PartResult]],
        units: Sequence[float],
        n: int,
    ) -> list[RewardOutcome]:
        if len(planned) == 1 and all(rows is None for rows in planned[0].parts.values()):
            outcomes = self._whole(jobs, planned[0], done[0], units, n)  # one task scored everything
        else:
            outcomes = self._pieces(jobs, planned, done, units, n)
        if log.isEnabledFor(logging.DEBUG):
            for outcome in outcomes:
                log.debug("reward %s: %d samples, %.1f ms of worker time", outcome.name, n, outcome.elapsed_ms)
        return outcomes

    def _whole(
        self, jobs: Sequence[Job], plan: Planned, results: list[PartResult], units: Sequence[float], n: int
    ) -> list[RewardOutcome]:
        """The outcomes of a task that scored every job on every sample: its results as they are."""
        outcomes: list[RewardOutcome] = [None] * len(jobs)  # type: ignore[list-item]
        total = sum(units)
        for index, part in zip(plan.parts, results, strict=True):
            job, result = jobs[index], part.result
            _check_length(job.reward.name, result, n)
            notes = {i: as_note(note) for i, note in result.notes.items()}
            extras = {key: list(values) for key, values in result.extras.items()}
            outcomes[index] = RewardOutcome(
                job.reward.name, job.weight, list(result.scores), notes, part.elapsed_ms, extras
            )
            self.costs.observe(job.reward.name, total, part.elapsed_ms)
        return outcomes

    def _pieces(
        self,
        jobs: Sequence[Job],
        planned: Sequence[Planned],
        done: Sequence[list[PartResult]],
        units: Sequence[float],
        n: int,
    ) -> list[RewardOutcome]:
        """The outcomes of tasks that each scored some jobs on some samples, put back at the request's indices."""
        outcomes = [RewardOutcome(job.reward.name, job.weight, [math.nan] * n, {}, 0.0) for job in jobs]
        for plan, results in zip(planned, done, strict=True):
            for (index, rows), part in zip(plan.parts.items(), results, strict=True):
                outcome, result = outcomes[index], part.result
                _check_length(outcome.name, result, n if rows is None else len(rows))
                rows = rows if rows is not None else range(n)
                for local, i in enumerate(rows):
                    outcome.scores[i] = result.scores[local]
                outcome.notes.update((rows[local], as_note(note)) for local, note in result.notes.items())
                outcome.elapsed_ms += part.elapsed_ms
                for key, values in result.extras.items():
                    column = outcome.extras.setdefault(key, [""] * n)
                    for local, i in enumerate(rows):
                        column[i] = values[local]
                self.costs.observe(outcome.name, sum(units[i] for i in rows), part.elapsed_ms)
        return outcomes

    async def _run_in_server(self, job: Job, samples: Samples) -> RewardOutcome:
        """A model-backed reward: awaited in the server process, where its model lives."""
        reward = job.reward
        start = time.perf_counter()
        batch = batch_for(reward, samples, reward.columns(job.params, samples.fields))
        n = len(samples)
        try:
            result = await reward.score_async(batch, **job.params)
            _check_length(reward.name, result, n)
        except PassFailed as exc:  # the model failed on these texts: each sample's UNAVAILABLE, not the call's
            result = BatchResult([math.nan] * n, notes_for(n, f"{reward.name}: {exc}", NoteKind.UNAVAILABLE))
        except RewardServiceError:
            raise  # a refused request (bad param, out of device memory, a shutdown) keeps its status
        except Exception as exc:  # a failed model pass is every sample's NaN, never the call's crash
            log.exception("reward %s: scoring %d samples failed", reward.name, n)
            kind = NoteKind.UNAVAILABLE if reward.requires_model else NoteKind.REWARD_ERROR
            why = f"{reward.name} failed: {type(exc).__name__}: {exc}"
            result = BatchResult([math.nan] * n, notes_for(n, why, kind))
        elapsed_ms = (time.perf_counter() - start) * 1000
        log.debug("reward %s: %d samples in %.1f ms", reward.name, n, elapsed_ms)
        notes = {i: as_note(note) for i, note in result.notes.items()}
        return RewardOutcome(reward.name, job.weight, result.scores, notes, elapsed_ms, result.extras)


#: Distinct lists of reward specs whose jobs a scorer keeps (then it starts over).
MAX_KNOWN_SPECS = 256


def _specs_key(calls: Sequence[RewardCall]) -> tuple | None:
    """What identifies a list of reward specs (None: a param value that cannot be compared cheaply). Types count:
    ``True``, ``1`` and ``1.0`` are equal in Python, but not to a param check."""
    key = tuple(
        (call.name, type(call.weight), call.weight, tuple((k, type(v), v) for k, v in call.params.items()))
        for call in calls
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _check_values(
    reward: str, field_name: str, check: Callable[[Any], None], fields: Sequence[Mapping[str, Any]]
) -> None:
    """Run a reward's check of one field over every sample (each distinct text once: a GRPO group repeats it)."""
    seen: set[str] = set()
    for i, sample in enumerate(fields):
        value = sample[field_name]
        if isinstance(value, str):
            if value in seen:
                continue
            seen.add(value)
        try:
            check(value)
        except ValueError as exc:
            raise InvalidArgument(f"samples[{i}] field {field_name!r}, read by reward {reward!r}: {exc}") from None


def typed_columns(fields: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Every field name of the samples → its value per sample (None where a sample lacks it)."""
    names = dict.fromkeys(name for f in fields for name in f)
    return {name: [f.get(name) for f in fields] for name in names}


def batch_for(reward: Reward, samples: Samples, columns: Mapping[str, list[str]]) -> Batch:
    """The whole request as ``reward`` sees it: its columns, and what else it reads."""
    reads = reward.reads
    return Batch(
        samples.completions,
        columns,
        samples.prompts if "prompts" in reads else (),
        samples.completion_ids if "completion_ids" in reads else (),  # type: ignore[arg-type] - checked in plan
        typed_columns(samples.fields) if "fields" in reads else {},
    )


def _task_inputs(jobs: Sequence[Job], samples: Samples, columns: dict[str, list[str]]) -> Task:
    """A task with the whole request: what any of the jobs reads (a task per plan takes its rows of it)."""
    reads = frozenset().union(*(job.reward.reads for job in jobs))
    return Task(
        samples.completions,
        columns,
        [],
        prompts=samples.prompts if "prompts" in reads else (),
        completion_ids=samples.completion_ids if "completion_ids" in reads else (),  # type: ignore[arg-type]
        typed_fields=typed_columns(samples.fields) if "fields" in reads else {},
    )


def _field_columns(jobs: Sequence[Job], fields: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Field name → its value per sample, for every field the jobs read.

    Equal values become one object, so that a reference repeated for every completion of a
    prompt is pickled once per task (pickle memoizes objects, not values).
    """
    columns: dict[str, list[str]] = {}
    for job in jobs:
        for name in job.fields:
            if name not in columns:
                shared: dict[str, str] = {}
                text = [f[name] if isinstance(f[name], str) else value_text(f[name]) for f in fields]
                columns[name] = [shared.setdefault(t, t) for t in text]
    return columns


def _task(planned: Planned, jobs: Sequence[Job], whole: Task, cancel_slot: int | None = None) -> Task:
    """The task for one plan: only the samples its parts need, with rows renumbered to match."""
    completions = whole.completions
    if any(rows is None for rows in planned.parts.values()):
        needed = None
    else:
        needed = sorted({i for rows in planned.parts.values() for i in rows or ()})
        if len(needed) == len(completions):
            needed = None
    if needed is None:
        parts = [
            jobs[j].part if rows is None else Part(jobs[j].reward.name, jobs[j].params, rows)
            for j, rows in planned.parts.items()
        ]
        return Task(
            completions, whole.fields, parts, cancel_slot, whole.prompts, whole.completion_ids, whole.typed_fields
        )
    local = {i: k for k, i in enumerate(needed)}
    parts = [
        Part(jobs[j].reward.name, jobs[j].params, None if rows == needed else [local[i] for i in rows or ()])
        for j, rows in planned.parts.items()
    ]
    return Task(
        [completions[i] for i in needed],
        {name: [column[i] for i in needed] for name, column in whole.fields.items()},
        parts,
        cancel_slot,
        [whole.prompts[i] for i in needed] if whole.prompts else (),
        [whole.completion_ids[i] for i in needed] if whole.completion_ids else (),
        {name: [column[i] for i in needed] for name, column in whole.typed_fields.items()},
    )


def _check_length(name: str, result: BatchResult, n: int) -> None:
    # A reward returning the wrong number of scores is a bug in the reward, never the caller's.
    if len(result.scores) != n:
        raise RuntimeError(f"reward {name} returned {len(result.scores)} scores for {n} samples")
