"""Settings that reward code reads inside worker processes (set by the pool initializer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to know about the server's configuration."""

    #: Hard time limit for one math_equivalence sample, in seconds.
    math_timeout_s: float = 5.0
    #: Time budget of one sample of any CPU reward, in seconds (0 = none).
    sample_timeout_s: float = 10.0


_current = WorkerSettings()


def configure(settings: WorkerSettings) -> None:
    global _current
    _current = settings


def current() -> WorkerSettings:
    return _current
