"""Settings handed from the server's configuration to the scoring code: request limits, and what
reward code reads inside worker processes (set by the pool initializer). ServerConfig takes its
defaults from here, so each default is written once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to know about the server's configuration."""

    #: Hard time limit for one math_equivalence sample, in seconds.
    math_timeout_s: float = 5.0
    #: Time budget of one sample of any CPU reward, in seconds (0 = none).
    sample_timeout_s: float = 10.0


@dataclass(frozen=True)
class Limits:
    """Request-size limits enforced before any work starts."""

    max_samples: int = 65536
    max_rewards: int = 64
    max_completion_chars: int = 1_000_000
    max_field_chars: int = 1_000_000
    max_params_bytes: int = 16384


_current = WorkerSettings()


def configure(settings: WorkerSettings) -> None:
    global _current
    _current = settings


def current() -> WorkerSettings:
    return _current
