"""Model settings and errors shared by the model modules: below ``base``, ``loading`` and ``batcher``, so that
none of them imports another for these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded (or a device that cannot be used); the message says why."""


@dataclass(frozen=True)
class BatchSettings:
    """How a model's batching worker gathers texts; every model gets the same settings.

    Example:
        >>> BatchSettings(max_batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: model_max_batch_size must be at least 1, got 0
    """

    #: Most texts gathered into one batch (across all concurrent requests).
    max_batch_size: int = 128
    #: Most padded tokens (texts × longest text) in one forward pass; a batch is split to fit.
    max_batch_tokens: int = 65536
    #: Longest a text waits for its batch to fill, in milliseconds.
    max_wait_ms: float = 5.0
    #: Most texts waiting for a batch; more get RESOURCE_EXHAUSTED instead of growing memory.
    max_queue: int = 16384
    #: Reference texts whose model output is kept (LRU); 0 turns the cache off.
    cache_size: int = 16384

    def __post_init__(self) -> None:
        for name, least in (("max_batch_size", 1), ("max_batch_tokens", 1), ("max_queue", 1), ("cache_size", 0)):
            value = getattr(self, name)
            if value < least:
                raise ValueError(f"model_{name} must be at least {least}, got {value}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"model_max_wait_ms must be >= 0, got {self.max_wait_ms}")

    @classmethod
    def from_config(cls, config: Any) -> BatchSettings:
        """The ``model_*`` settings of a :class:`~reward_server.config.ServerConfig`."""
        return cls(
            max_batch_size=config.model_max_batch_size,
            max_batch_tokens=config.model_max_batch_tokens,
            max_wait_ms=config.model_max_wait_ms,
            max_queue=config.model_max_queue,
            cache_size=config.model_cache_size,
        )
