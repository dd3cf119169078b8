"""The batching worker of one model: texts from every concurrent request, classified together.

The event loop only does bookkeeping. Tokenizing runs in a small thread pool as each request
arrives, and the forward passes run in one dedicated model thread (torch and the tokenizers
release the GIL), so health checks and CPU rewards keep answering while the model works.

A collector task takes texts from the queue in arrival order: as soon as ``max_batch_size``
texts (or ``max_batch_tokens`` tokens) wait, or the oldest has waited ``max_wait_ms``, or the
queue is full, it hands them to the model thread as one batch. While the model runs, new texts
queue up and form the next batch. The model thread sorts a batch by length and splits it into
forward passes within the token budget, so short texts are not padded to long ones.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from reward_server.errors import ResourceExhausted, Unavailable
from reward_server.models.base import BatchSettings
from reward_server.models.loading import Classifier, Encoding, Probs
from reward_server.models.lru import LRUCache
from reward_server.models.stats import BatcherStats

log = logging.getLogger(__name__)


def plan_passes(lengths: Sequence[int], max_size: int, max_tokens: int) -> list[list[int]]:
    """Split texts (by index) into forward passes, shortest first, each within both limits.

    A pass costs about (number of texts) × (its longest text) tokens once padded; sorting by
    length keeps that close to the real token count. A text over ``max_tokens`` runs alone.

    Example:
        >>> plan_passes([5, 1, 3, 2], max_size=3, max_tokens=100)
        [[1, 3, 2], [0]]
        >>> plan_passes([4, 4, 4], max_size=8, max_tokens=8)
        [[0, 1], [2]]
    """
    passes: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if current and (len(current) >= max_size or (len(current) + 1) * lengths[i] > max_tokens):
            passes.append(current)
            current = []
        current.append(i)
    if current:
        passes.append(current)
    return passes


@dataclass(eq=False)
class _Item:
    """One distinct text waiting for the model, shared by every request that asked for it."""

    text: str
    encoding: Encoding
    future: asyncio.Future[Probs]
    call: int
    arrived: float

    @property
    def length(self) -> int:
        return len(self.encoding["input_ids"])


class ModelWorker:
    """Gathers texts across requests into batches for one loaded :class:`Classifier`."""

    def __init__(self, classifier: Classifier, settings: BatchSettings) -> None:
        self.classifier = classifier
        self.settings = settings
        self.stats = BatcherStats()
        self.name = f"{classifier.model_id}@{classifier.device}"
        self._queue: deque[_Item] = deque()
        self._queued_tokens = 0
        #: Text → the future of its model output, from admission until its batch is done.
        self._inflight: dict[str, asyncio.Future[Probs]] = {}
        self._cache: LRUCache[str, Probs] = LRUCache(settings.cache_size)
        self._wake = asyncio.Event()
        self._calls = itertools.count(1)
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._tokenizers = ThreadPoolExecutor(2, thread_name_prefix="tokenize")
        self._tasks: set[asyncio.Task] = set()
        self._collector: asyncio.Task | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def start(self) -> None:
        """Start the collector on the running event loop."""
        self._collector = asyncio.get_running_loop().create_task(self._collect(), name=f"collect {self.name}")
        self._collector.add_done_callback(self._collector_done)

    async def close(self) -> None:
        """Stop collecting; whatever still waits fails with UNAVAILABLE."""
        tasks = [t for t in (self._collector, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_all(Unavailable(f"model {self.classifier.model_id} is shutting down; retry on another server"))
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        self._tokenizers.shutdown(wait=False, cancel_futures=True)

    async def predict(self, texts: Sequence[str], cached: Sequence[str] = ()) -> tuple[list[Probs], list[Probs]]:
        """Model outputs for ``texts`` and for ``cached`` (kept in the LRU cache: reference texts).

        Both go into the same batches. Raises ResourceExhausted when the queue has no room for
        the texts this call adds, before queueing any of them.
        """
        call = next(self._calls)
        asked = [*texts, *cached]
        distinct_cached = dict.fromkeys(cached)
        known: dict[str, Probs] = {}
        for text in distinct_cached:
            probs = self._cache.get(text)
            if probs is not None:
                known[text] = probs
        hits = len(known)
        misses = len(distinct_cached) - hits
        wanted = [t for t in dict.fromkeys(asked) if t not in known]
        futures = {t: self._inflight[t] for t in wanted if t in self._inflight}
        new = [t for t in wanted if t not in futures]
        self._reserve(len(new))
        stats = self.stats
        stats.requests += 1
        stats.texts += len(asked)
        stats.cache_hits += hits
        stats.cache_misses += misses
        # Every text asked for is a cache hit, newly queued, or a copy of one in this call or in flight.
        stats.deduplicated += len(asked) - len(known) - len(new)
        loop = asyncio.get_running_loop()
        for text in new:
            futures[text] = self._inflight[text] = loop.create_future()
        if log.isEnabledFor(logging.DEBUG):  # spares the summary on every call when not logged
            log.debug(
                "%s: call=%d texts=%d cache_hits=%d cache_misses=%d joined=%d new=%d | %s",
                self.name,
                call,
                len(asked),
                hits,
                misses,
                len(wanted) - len(new),
                len(new),
                stats.summary(),
            )
        if new:
            # A task of its own, so a caller that goes away cannot strand texts others share.
            task = loop.create_task(self._enqueue(call, new, [futures[t] for t in new]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if futures:
            await asyncio.wait(futures.values())  # unlike gather, never cancels the shared futures
        for text, future in futures.items():
            known[text] = future.result()
        # One put per distinct text, in order of last occurrence: the cache ends as if each were put in turn.
        for text in reversed(dict.fromkeys(reversed(cached))):
            self._cache.put(text, known[text])
        return [known[t] for t in texts], [known[t] for t in cached]

    def _reserve(self, count: int) -> None:
        limit = self.settings.max_queue
        if count > limit:
            self.stats.rejected += 1
            raise ResourceExhausted(
                f"model {self.classifier.model_id}: {count} new texts in one call, but its queue holds at most "
                f"{limit} (split the batch, or raise model_max_queue)"
            )
        if self.stats.queued + count > limit:
            self.stats.rejected += 1
            raise ResourceExhausted(
                f"model {self.classifier.model_id} is busy: {self.stats.queued} texts are queued and {count} more "
                f"would pass the limit of {limit} (model_max_queue); retry later",
                retry_after_s=0.5,
            )
        self.stats.queued += count

    async def _enqueue(self, call: int, texts: list[str], futures: list[asyncio.Future[Probs]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            encodings = await loop.run_in_executor(self._tokenizers, self.classifier.encode, texts)
        except Exception as exc:  # noqa: BLE001 - reported to every waiting caller instead
            self.stats.queued -= len(texts)
            error = Unavailable(f"model {self.classifier.model_id}: tokenizing failed: {type(exc).__name__}: {exc}")
            for text, future in zip(texts, futures, strict=True):
                self._settle(text, future, error=error)
            return
        now = loop.time()
        for text, encoding, future in zip(texts, encodings, futures, strict=True):
            self._queue.append(_Item(text, encoding, future, call, now))
            self._queued_tokens += len(encoding["input_ids"])
        log.debug("%s: call=%d queued %d texts (%d waiting)", self.name, call, len(texts), self.stats.queued)
        self._wake.set()

    def _full(self) -> bool:
        """A batch is ready: its size or token budget is reached, or no more texts can arrive.

        Texts still being tokenized count as arriving (they hold queue slots but are not queued yet).
        """
        s = self.settings
        return (
            len(self._queue) >= s.max_batch_size
            or self._queued_tokens >= s.max_batch_tokens
            or len(self._queue) >= s.max_queue
        )

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        max_wait = self.settings.max_wait_ms / 1000
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            # Wait for the batch to fill, but never longer than max_wait after its oldest text arrived
            # (texts that queued up while the model was busy have waited already and go at once).
            while not self._full():
                remaining = self._queue[0].arrived + max_wait - loop.time()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
            await self._run(self._take())

    def _take(self) -> list[_Item]:
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.settings.max_batch_size))]
        self._queued_tokens -= sum(item.length for item in batch)
        self.stats.queued -= len(batch)
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        lengths = [item.length for item in batch]
        passes = plan_passes(lengths, self.settings.max_batch_size, self.settings.max_batch_tokens)
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(
                self._model_thread, self.classifier.predict, [item.encoding for item in batch], passes
            )
        except Exception as exc:  # one failed batch must not stop the worker
            log.exception("%s: a batch of %d texts failed", self.name, len(batch))
            error = Unavailable(f"model {self.classifier.model_id} failed on a batch: {type(exc).__name__}: {exc}")
            for item in batch:
                self._settle(item.text, item.future, error=error)
            return
        for item, probs in zip(batch, outputs, strict=True):
            self._settle(item.text, item.future, probs)
        requests = len({item.call for item in batch})
        self.stats.record_batch(len(batch), requests, [len(p) for p in passes])
        if log.isEnabledFor(logging.DEBUG):  # spares the joins, sums and summary on every batch when not logged
            log.debug(
                "%s: batch size=%d requests=%d passes=%s tokens=%d padded=%d %.1f ms | %s",
                self.name,
                len(batch),
                requests,
                ",".join(str(len(p)) for p in passes),
                sum(lengths),
                sum(len(p) * max(lengths[i] for i in p) for p in passes),
                (time.perf_counter() - start) * 1000,
                self.stats.summary(),
            )

    def _settle(
        self, text: str, future: asyncio.Future[Probs], probs: Probs = (), error: Exception | None = None
    ) -> None:
        if self._inflight.get(text) is future:
            del self._inflight[text]
        if not future.done():
            if error is None:
                future.set_result(probs)
            else:
                future.set_exception(error)

    def _fail_all(self, error: Exception) -> None:
        for text, future in list(self._inflight.items()):
            self._settle(text, future, error=error)
        self._queue.clear()
        self._queued_tokens = 0
        self.stats.queued = 0

    def _collector_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: the batch collector stopped", self.name, exc_info=task.exception())
            self._fail_all(Unavailable(f"model {self.classifier.model_id}: the batch collector stopped"))
