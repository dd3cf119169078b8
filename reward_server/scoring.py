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
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from reward.values import value_text
from reward_server.calls import Job, RewardCall, RewardOutcome, Samples, weighted_total
from reward_server.cancellation import CancelBoard
from reward_server.errors import InvalidArgument, PassFailed, ResourceExhausted, RewardServiceError
from reward_server.outcomes import NoteKind, as_note, notes_for
from reward_server.planning import MIN_TASK_MS, SAMPLE_CHARS, CostModel, Planned, plan_tasks, split_of
from reward_server.registry import Batch, BatchResult, Registry, Reward
from reward_server.settings import Limits
from reward_server.trl_functions import mixed_shapes
from reward_server.worker import Part, PartResult, Task, run_task, run_tasks

log = logging.getLogger(__name__)

#: A request of at most this many samples whose CPU work is one task may share a worker trip with others.
COALESCE_MAX_SAMPLES = 256


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
        #: Small requests' tasks waiting for a free worker, each with the future of its results: while every
        #: worker is busy they pile up here and go to the next free worker together (see :meth:`_coalesced`).
        self._waiting: list[tuple[Task, int, asyncio.Future[list[PartResult]]]] = []
        #: Worker trips that carried several requests' tasks, and the requests they carried.
        self.coalesced_trips = 0
        self.coalesced_requests = 0
        #: Tasks submitted so far (how finely requests were cut).
        self.tasks_run = 0
        #: Shared flags that stop the workers of a cancelled call (the server's, shared with its pool).
        self.cancel_board = cancel_board
        #: Score calls running on this scorer: a reload shuts the old pool down once this is 0.
        self.active = 0

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
            for param_name, check_value in reward.field_checks:
                field_name = str(params[param_name])
                key = f"{field_name}\0{id(check_value)}"  # two rewards sharing a check run it once
                if key not in checked:
                    checked.add(key)
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
            jobs.append(Job(reward, params, weight))
        return jobs

    async def score(self, samples: Samples, calls: Sequence[RewardCall]) -> tuple[list[RewardOutcome], list[float]]:
        """Score every call over the batch; returns outcomes in request order and the totals."""
        self.active += 1  # before the first await: a reload sees this call before it can retire the pool
        try:
            return await self._score(samples, calls)
        finally:
            self.active -= 1

    async def _score(self, samples: Samples, calls: Sequence[RewardCall]) -> tuple[list[RewardOutcome], list[float]]:
        jobs = self.plan(calls, samples)
        on_cpu = [i for i, job in enumerate(jobs) if job.reward.score_async is None]
        in_server = [i for i, job in enumerate(jobs) if job.reward.score_async is not None]
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
        splits = [split_of(job.reward, job.params) for job in jobs]
        keys = [None if s.kind == "sample" else columns[s.field] if s.kind == "group" else [] for s in splits]
        rates = [self.costs.rate(job.reward.name, s.kind) for job, s in zip(jobs, splits, strict=True)]
        units = [len(c) + SAMPLE_CHARS for c in completions]
        estimate = sum(rates) * sum(units)
        free = max(1, self.parallelism - self._busy)
        planned = plan_tasks(keys, rates, units, max(1, min(free, int(estimate / MIN_TASK_MS))))
        loop = asyncio.get_running_loop()
        slot = self.cancel_board.open() if self.cancel_board else None
        whole = _task_inputs(jobs, samples, columns)
        tasks = [_task(p, jobs, whole, slot) for p in planned]
        self.tasks_run += len(planned)
        try:
            if len(tasks) == 1 and len(completions) <= COALESCE_MAX_SAMPLES:
                done = [await self._coalesced(tasks[0], len(completions))]
            else:
                self._busy += len(planned)
                try:
                    done = await asyncio.gather(
                        *(loop.run_in_executor(self.executor, run_task, task) for task in tasks)
                    )
                finally:
                    self._busy -= len(planned)
                    self._dispatch()  # workers freed: small requests waiting behind this one go now
        except asyncio.CancelledError:
            if slot is not None:  # the workers stop at their next sample
                self.cancel_board.cancel(slot)
            raise
        return self._merge(jobs, planned, done, units, len(completions))

    async def _coalesced(self, task: Task, samples: int) -> list[PartResult]:
        """Score a small request's one task, sharing a worker trip with other small requests.

        Like the model batcher's queue, but for the worker pool: a task goes at once when a worker is free;
        while all are busy (many one-sample calls at once), tasks wait and the next free worker takes a fair
        share of them (at most ``COALESCE_MAX_SAMPLES`` samples) in one trip, so the per-call cost of a trip
        (pickling, IPC, wake-up) is paid once per batch instead of once per sample.
        """
        future: asyncio.Future[list[PartResult]] = asyncio.get_running_loop().create_future()
        self._waiting.append((task, samples, future))
        self._dispatch()
        return await future  # cancelled: the future is skipped when its turn comes

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        # Every thread of a thread pool counts here (unlike for planning): a reward waiting on I/O (a sandbox,
        # a judge) releases the GIL, so trips on several threads still overlap.
        slots = max(1, getattr(self.executor, "_max_workers", 1))
        while self._busy < slots:
            self._waiting = [w for w in self._waiting if not w[2].cancelled()]
            if not self._waiting:
                return
            share = -(-len(self._waiting) // max(1, slots - self._busy))
            taken, count = [], 0
            while (
                self._waiting
                and len(taken) < share
                and (not taken or count + self._waiting[0][1] <= COALESCE_MAX_SAMPLES)
            ):
                taken.append(self._waiting.pop(0))
                count += taken[-1][1]
            self._busy += 1
            if len(taken) > 1:
                self.coalesced_trips += 1
                self.coalesced_requests += len(taken)
            futures = [f for _, _, f in taken]
            try:
                trip = loop.run_in_executor(self.executor, run_tasks, [t for t, _, _ in taken])
            except RuntimeError as exc:  # the pool is shut down (a reload retired it): its callers hear why
                self._busy -= 1
                for future in futures:
                    future.set_exception(exc)
                continue
            trip.add_done_callback(functools.partial(self._trip_done, futures))

    def _trip_done(self, futures: list[asyncio.Future[list[PartResult]]], trip: asyncio.Future) -> None:
        self._busy -= 1
        error = trip.exception() if not trip.cancelled() else asyncio.CancelledError()
        results = trip.result() if error is None else [error] * len(futures)
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._dispatch()

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
                outcome.notes.update((rows[local], as_note(note)) for local, note in result.notes.items())
                outcome.elapsed_ms += part.elapsed_ms
                for key, values in result.extras.items():
                    column = outcome.extras.setdefault(key, [""] * n)
                    for local, i in enumerate(rows):
                        column[i] = values[local]
                self.costs.observe(outcome.name, sum(units[i] for i in rows), part.elapsed_ms)
        for outcome in outcomes:
            log.debug("reward %s: %d samples, %.1f ms of worker time", outcome.name, n, outcome.elapsed_ms)
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
        for name in job.reward.fields_read(job.params):
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
        parts = [Part(jobs[j].reward.name, jobs[j].params, rows) for j, rows in planned.parts.items()]
        return dataclasses.replace(whole, parts=parts, cancel_slot=cancel_slot)
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
