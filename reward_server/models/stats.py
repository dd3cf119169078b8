"""Counters of a model's batching worker, kept as plain data so a metrics exporter can read them."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

#: Bucket bounds (seconds) of the time a text waits in the queue and of a batch's forward passes.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Histogram:
    """Counts per bucket (upper bounds ``bounds``, then +Inf), their sum and count: a Prometheus histogram.

    Example:
        >>> h = Histogram((0.1, 1.0))
        >>> h.observe_all([0.05, 0.5, 3.0])
        >>> h.cumulative(), h.count, round(h.sum, 2)
        ([1, 2, 3], 3, 3.55)
    """

    bounds: tuple[float, ...] = SECONDS_BUCKETS
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def observe_all(self, values: Iterable[float]) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        for value in values:
            self.counts[bisect.bisect_left(self.bounds, value)] += 1
            self.sum += value
            self.count += 1

    def cumulative(self) -> list[int]:
        """Counts at or below each bound, then the total (what a Prometheus histogram exposes)."""
        out, running = [], 0
        for n in self.counts or [0] * (len(self.bounds) + 1):
            running += n
            out.append(running)
        return out


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
    #: Tokens run through the model (without padding, and with it).
    tokens: int = 0
    padded_tokens: int = 0
    #: Seconds a text waited from queueing to its batch's start, and seconds per batch in the forward passes.
    queue_seconds: Histogram = field(default_factory=Histogram)
    forward_seconds: Histogram = field(default_factory=Histogram)
    #: Batches failed because the device ran out of memory (their requests got RESOURCE_EXHAUSTED).
    out_of_memory: int = 0

    def record_batch(
        self,
        size: int,
        requests: int,
        passes: list[int],
        tokens: int = 0,
        padded: int = 0,
        forward_s: float = 0.0,
        waits: Iterable[float] = (),
    ) -> None:
        """Count one batch of ``size`` texts from ``requests`` calls, run as ``passes``."""
        self.batches += 1
        self.sequences += size
        self.forward_passes += len(passes)
        self.shared_batches += requests > 1
        self.batch_sizes[size] += 1
        self.tokens += tokens
        self.padded_tokens += padded
        self.forward_seconds.observe_all([forward_s])
        self.queue_seconds.observe_all(waits)

    @property
    def tokens_per_second(self) -> float:
        """Tokens per second of forward-pass time: the model's speed while it works."""
        return self.tokens / self.forward_seconds.sum if self.forward_seconds.sum > 0 else 0.0

    def summary(self) -> str:
        """The counters as ``key=value`` pairs, the form the server logs them in."""
        return (
            f"requests={self.requests} texts={self.texts} deduplicated={self.deduplicated} "
            f"cache_hits={self.cache_hits} cache_misses={self.cache_misses} rejected={self.rejected} "
            f"batches={self.batches} sequences={self.sequences} forward_passes={self.forward_passes} "
            f"shared_batches={self.shared_batches} queued={self.queued}"
        )
