"""Code that runs inside the scoring worker processes.

Workers are started once (warm) and reused: each imports the reward catalogue and builds
its stop word lists and compiled patterns at start-up, not per request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from reward_server import settings
from reward_server.registry import REGISTRY, BatchResult, ParamValue


def init_worker(worker_settings: settings.WorkerSettings) -> None:
    """Pool initializer: load the catalogue and warm what the rewards build lazily."""
    settings.configure(worker_settings)
    import reward_server.rewards  # noqa: F401 - registers the rewards
    from reward_server.rewards.math_equiv import equivalent, warm_math_verify
    from reward_server.sandbox import run_with_timeout
    from reward_server.stopwords import stop_words

    stop_words("german")
    # Start this worker's math sandbox now: its first start imports sympy (seconds).
    run_with_timeout(equivalent, "1", "1", timeout=120, warmup=warm_math_verify)


def ping(delay: float = 0.0) -> bool:
    """A no-op task used to make the pool start (and warm) its workers before serving."""
    time.sleep(delay)
    return True


def run_reward(
    name: str, params: Mapping[str, ParamValue], completions: list[str], columns: Mapping[str, list[str]]
) -> BatchResult:
    """Score one reward over a batch; arguments are plain data so they pickle cheaply."""
    return REGISTRY.get(name).score_batch(completions, columns, **params)
