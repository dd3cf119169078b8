"""Param checks shared by the TRL and open-r1 rewards: values their types allow but the reward cannot use.

Each raises ValueError naming the param, as TRL's factories do; passed as ``check=`` to the decorators,
a request with such a value is refused with INVALID_ARGUMENT before anything runs.
"""

from __future__ import annotations

from typing import Any


def repetition_params(*, ngram_size: int, max_penalty: float, **_: Any) -> None:
    """TRL's and open-r1's ``get_repetition_penalty_reward`` checks.

    Example:
        >>> repetition_params(ngram_size=0, max_penalty=-1.0)
        Traceback (most recent call last):
        ...
        ValueError: ngram_size must be positive, got 0
    """
    if max_penalty > 0:
        raise ValueError(f"max_penalty {max_penalty} should not be positive")
    if ngram_size <= 0:
        raise ValueError(f"ngram_size must be positive, got {ngram_size}")


def positive_max_len(*, max_len: float, **_: Any) -> None:
    """A cosine schedule's ``max_len`` divides the length: it must be positive.

    Example:
        >>> positive_max_len(max_len=0)
        Traceback (most recent call last):
        ...
        ValueError: max_len must be positive, got 0
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
