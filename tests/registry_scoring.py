"""Helpers for the standard-library reward tests: score in-process through the registry, compare with NaN = None."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import reward_server.rewards  # noqa: F401 - registers the rewards
from reward_server.registry import REGISTRY, Batch, BatchResult


def score(
    name: str,
    completions: Sequence[str],
    solutions: Sequence[str] | None = None,
    *,
    ids: Sequence[Sequence[int]] = (),
    prompts: Sequence[Any] = (),
    **params: Any,
) -> BatchResult:
    """``REGISTRY.get(name).score_batch`` on these samples, as a worker runs it (params validated, defaults merged)."""
    reward = REGISTRY.get(name)
    merged = reward.validate_params(params)
    columns = {p.name: list(solutions or ()) for p in reward.params if p.is_field}
    batch = Batch(list(completions), columns, list(prompts) or [""] * len(completions), list(ids))
    return reward.score_batch(batch, **merged)


def as_none(scores: Sequence[float]) -> list[float | None]:
    """NaN → None, the way TRL writes "does not apply"."""
    return [None if math.isnan(s) else s for s in scores]


def conversational(completions: Sequence[str]) -> list[list[dict[str, str]]]:
    """Completions as TRL hands conversational ones to reward functions."""
    return [[{"role": "assistant", "content": c}] for c in completions]


def log_extra_of(fn: Any, *args: Any, **kwargs: Any) -> tuple[list, dict[str, list]]:
    """Call a TRL reward with a ``log_extra`` collector: (its scores, the columns it logged)."""
    logged: dict[str, list] = {}
    scores = fn(*args, log_extra=lambda column, values: logged.setdefault(column, []).extend(values), **kwargs)
    return scores, logged
