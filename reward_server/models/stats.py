"""Counters of a model's batching worker, kept as plain data so a metrics exporter can read them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class BatcherStats:
    """What one batching worker has done since the server started.

    Only the event loop thread writes these (the model thread hands its results back to it), so
    reading them from the loop needs no lock.

    Example:
        >>> stats = BatcherStats()
        >>> stats.record_batch(size=5, requests=2, passes=[3, 2])
        >>> stats.record_batch(size=5, requests=1, passes=[5])
        >>> stats.batches, stats.sequences, stats.forward_passes, dict(stats.batch_sizes)
        (2, 10, 3, {5: 2})
    """

    #: Calls to the worker (one per reward call of a Score request).
    requests: int = 0
    #: Texts those calls asked for, before the cache and deduplication.
    texts: int = 0
    #: Texts classified once for several askers: a copy in the same call, or already queued or running.
    deduplicated: int = 0
    #: Reference texts answered from the LRU cache, and those that had to be classified.
    cache_hits: int = 0
    cache_misses: int = 0
    #: Calls refused with RESOURCE_EXHAUSTED because the queue was full.
    rejected: int = 0
    #: Batches formed (one gather from the queue) and the texts they ran through the model.
    batches: int = 0
    sequences: int = 0
    #: Forward passes (a batch is split into passes by the token budget).
    forward_passes: int = 0
    #: Batches that held texts of more than one request (cross-request batching at work).
    shared_batches: int = 0
    #: Batch size → how many batches had that size.
    batch_sizes: Counter[int] = field(default_factory=Counter)
    #: Texts waiting in the queue right now.
    queued: int = 0

    def record_batch(self, size: int, requests: int, passes: list[int]) -> None:
        """Count one batch of ``size`` texts from ``requests`` calls, run as ``passes``."""
        self.batches += 1
        self.sequences += size
        self.forward_passes += len(passes)
        self.shared_batches += requests > 1
        self.batch_sizes[size] += 1

    def summary(self) -> str:
        """The counters as ``key=value`` pairs, the form the server logs them in."""
        return (
            f"requests={self.requests} texts={self.texts} deduplicated={self.deduplicated} "
            f"cache_hits={self.cache_hits} cache_misses={self.cache_misses} rejected={self.rejected} "
            f"batches={self.batches} sequences={self.sequences} forward_passes={self.forward_passes} "
            f"shared_batches={self.shared_batches} queued={self.queued}"
        )
