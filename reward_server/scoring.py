"""The scoring engine: validates a batch against the registry, runs the rewards, adds up totals.

Transport-free: it takes plain Python values and raises the domain errors of ``errors``.
CPU rewards run in a warm executor (worker processes by default), so the event loop never
does reward work and independent rewards of one request run in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from reward_server.errors import InvalidArgument, ResourceExhausted
from reward_server.registry import BatchResult, ParamValue, Registry, Reward
from reward_server.worker import run_reward

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


@dataclass
class Limits:
    """Request-size limits enforced before any work starts."""

    max_samples: int = 65536
    max_rewards: int = 64


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


class Scorer:
    """Validates and scores batches with the rewards of a registry."""

    def __init__(self, registry: Registry, executor: Executor, limits: Limits | None = None) -> None:
        self.registry = registry
        self.executor = executor
        self.limits = limits or Limits()

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
        for index, call in enumerate(calls):
            reward = self.registry.get(call.name)
            weight = 1.0 if call.weight is None else call.weight
            if not math.isfinite(weight):
                raise InvalidArgument(f"rewards[{index}] ({reward.name}): weight must be finite, got {weight}")
            params = reward.validate_params(call.params)
            for field_name in reward.fields_read(params):
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
        outcomes = await asyncio.gather(*(self._run(job, completions, fields) for job in jobs))
        return list(outcomes), weighted_total(outcomes, len(completions))

    async def _run(self, job: Job, completions: list[str], fields: Sequence[Mapping[str, str]]) -> RewardOutcome:
        reward = job.reward
        columns = {p.name: [f[str(job.params[p.name])] for f in fields] for p in reward.params if p.is_field}
        start = time.perf_counter()
        if reward.score_async is not None:
            result = await reward.score_async(completions, columns, **job.params)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                self.executor, run_reward, reward.name, job.params, completions, columns
            )
        elapsed_ms = (time.perf_counter() - start) * 1000
        _check_length(reward.name, result, len(completions))
        log.debug("reward %s: %d samples in %.1f ms", reward.name, len(completions), elapsed_ms)
        return RewardOutcome(reward.name, job.weight, result.scores, result.notes, elapsed_ms)


def _check_length(name: str, result: BatchResult, n: int) -> None:
    # A reward returning the wrong number of scores is a bug in the reward, never the caller's.
    if len(result.scores) != n:
        raise RuntimeError(f"reward {name} returned {len(result.scores)} scores for {n} samples")
