"""The batching worker of one model: texts from every concurrent request, classified together.

The event loop only does bookkeeping. Tokenizing (and padding a batch into tensors) runs in a
small thread pool, and the forward passes run in one dedicated model thread (torch and the
tokenizers release the GIL), so health checks and CPU rewards keep answering while the model works.

The batches are formed by the server's one batching mechanism, ``batching.Collector`` (the worker
pool's coalescing of small requests is the other user): as soon as ``max_batch_size`` texts (or
``max_batch_tokens`` tokens) wait, or the oldest has waited ``max_wait_ms``, or the queue is full,
the texts are sorted by length, split into forward passes within the token budget (so short texts
are not padded to long ones), padded, and handed to the model thread as one batch. While the model
runs, new texts queue up and form the next batch; a full one is padded and queued behind the running
batch at once (at most two batches in flight, a partial one only when the model is free), so the
model thread goes from one forward pass to the next without waiting for Python work.

Texts are keyed by (text, truncation): requests that truncate differently never share a result.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from reward_server.batching import Collector
from reward_server.errors import PassFailed, ResourceExhausted, Unavailable
from reward_server.models.loading import Classifier, Encoding, Logits, PassOutOfMemory, Truncation
from reward_server.models.lru import LRUCache
from reward_server.models.settings import BatchSettings
from reward_server.models.stats import BatcherStats

log = logging.getLogger(__name__)
T = TypeVar("T")


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


#: What the worker classifies once and shares: a text and how it is truncated.
Key = tuple[str, Truncation]
#: Batches handed to the model thread and not yet done: one running, one padded and waiting behind it.
MAX_IN_FLIGHT = 2


@dataclass(eq=False)
class _Item:
    """One distinct text waiting for the model, shared by every request that asked for it."""

    key: Key
    encoding: Encoding
    future: asyncio.Future[Logits]
    call: int
    arrived: float

    @property
    def length(self) -> int:
        return len(self.encoding["input_ids"])


class ModelWorker(Collector[_Item]):
    """Gathers texts across requests into batches for one loaded :class:`Classifier`."""

    def __init__(self, classifier: Classifier, settings: BatchSettings, name: str = "") -> None:
        super().__init__(
            name or f"{classifier.model_id}@{classifier.device}",
            max_batch=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_in_flight=MAX_IN_FLIGHT,
            partial_in_flight=1,
        )
        self.classifier = classifier
        self.settings = settings
        self.stats = BatcherStats()
        self._queued_tokens = 0
        #: Key → the future of its model output, from admission until its batch is done.
        self._inflight: dict[Key, asyncio.Future[Logits]] = {}
        self._cache: LRUCache[Key, Logits] = LRUCache(settings.cache_size)
        self._calls = itertools.count(1)
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._tokenizers = ThreadPoolExecutor(2, thread_name_prefix="tokenize")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def start(self) -> None:
        """Nothing to start: the collector runs whenever texts wait (kept for the callers that start a worker)."""

    async def close(self) -> None:
        """Stop collecting; whatever still waits fails with UNAVAILABLE."""
        await super().close()
        self._fail_all(Unavailable(f"model {self.classifier.model_id} is shutting down; retry on another server"))
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        self._tokenizers.shutdown(wait=False, cancel_futures=True)

    async def prepare(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a tokenizer thread: per-sample Python work (chat templates) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._tokenizers, fn, *args)

    async def predict(
        self, texts: Sequence[str], cached: Sequence[str] = (), truncation: Truncation | None = None
    ) -> tuple[list[Logits], list[Logits]]:
        """Model logits for ``texts`` and for ``cached`` (kept in the LRU cache: reference texts).

        Both go into the same batches, truncated as ``truncation`` says (default: the model's limit,
        on the right). Raises ResourceExhausted when the queue has no room for the texts this call
        adds, before queueing any of them.
        """
        call = next(self._calls)
        cut = truncation or self.classifier.default_truncation
        texts = [(t, cut) for t in texts]
        cached = [(t, cut) for t in cached]
        asked = [*texts, *cached]
        distinct_cached = dict.fromkeys(cached)
        known: dict[Key, Logits] = {}
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
            task = loop.create_task(self._enqueue(call, cut, new, [futures[t] for t in new]))
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

    async def _enqueue(
        self, call: int, cut: Truncation, keys: list[Key], futures: list[asyncio.Future[Logits]]
    ) -> None:
        loop = asyncio.get_running_loop()
        texts = [text for text, _ in keys]
        try:
            encodings = await loop.run_in_executor(self._tokenizers, self.classifier.encode, texts, cut)
        except Exception as exc:  # noqa: BLE001 - reported to every waiting caller instead
            self.stats.queued -= len(texts)
            error = Unavailable(f"model {self.classifier.model_id}: tokenizing failed: {type(exc).__name__}: {exc}")
            for key, future in zip(keys, futures, strict=True):
                self._settle(key, future, error=error)
            return
        now = loop.time()
        items = [
            _Item(key, encoding, future, call, now)
            for key, encoding, future in zip(keys, encodings, futures, strict=True)
        ]
        self._queued_tokens += sum(item.length for item in items)
        self.put(items)
        log.debug("%s: call=%d queued %d texts (%d waiting)", self.name, call, len(texts), self.stats.queued)

    def full(self) -> bool:
        """A batch is ready: its size or token budget is reached, or no more texts can arrive.

        Texts still being tokenized count as arriving (they hold queue slots but are not queued yet).
        """
        s = self.settings
        return (
            len(self.queue) >= s.max_batch_size
            or self._queued_tokens >= s.max_batch_tokens
            or len(self.queue) >= s.max_queue
        )

    def taken(self, batch: list[_Item]) -> None:
        self._queued_tokens -= sum(item.length for item in batch)
        self.stats.queued -= len(batch)

    async def launch(self, batch: list[_Item]) -> Awaitable[None] | None:
        """Plan the batch's forward passes and have them padded (in a tokenizer thread); the run comes next."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        lengths = [item.length for item in batch]
        passes = plan_passes(lengths, self.settings.max_batch_size, self.settings.max_batch_tokens)
        try:
            prepared = await loop.run_in_executor(
                self._tokenizers, self.classifier.collate, [item.encoding for item in batch], passes
            )
        except Exception as exc:  # noqa: BLE001 - a batch that cannot be padded fails alone
            self._fail_batch(batch, exc)
            return None
        return self._run(batch, lengths, passes, prepared, started)

    async def _run(
        self, batch: list[_Item], lengths: list[int], passes: list[list[int]], prepared: list, started: float
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            per_pass, forward_s = await loop.run_in_executor(self._model_thread, self.classifier.forward, prepared)
        except Exception as exc:  # noqa: BLE001 - one failed batch must not stop the worker
            self._fail_batch(batch, exc, lengths)
            return
        for indices, rows in zip(passes, per_pass, strict=True):
            for i, logits in zip(indices, rows, strict=True):
                self._settle(batch[i].key, batch[i].future, logits)
        requests = len({item.call for item in batch})
        padded = sum(len(p) * max(lengths[i] for i in p) for p in passes)
        waits = [started - item.arrived for item in batch]
        self.stats.record_batch(len(batch), requests, [len(p) for p in passes], sum(lengths), padded, forward_s, waits)
        if log.isEnabledFor(logging.DEBUG):  # spares the joins, sums and summary on every batch when not logged
            log.debug(
                "%s: batch size=%d requests=%d passes=%s tokens=%d padded=%d %.1f ms | %s",
                self.name,
                len(batch),
                requests,
                ",".join(str(len(p)) for p in passes),
                sum(lengths),
                padded,
                forward_s * 1000,
                self.stats.summary(),
            )

    def _fail_batch(self, batch: list[_Item], exc: Exception, lengths: list[int] | None = None) -> None:
        """Every text of a failed batch gets the error: RESOURCE_EXHAUSTED for memory, else UNAVAILABLE."""
        lengths = lengths or [item.length for item in batch]
        what = f"a batch of {len(batch)} texts ({sum(lengths)} tokens, the longest {max(lengths)})"
        if isinstance(exc, PassOutOfMemory):
            self.stats.out_of_memory += 1
            log.error("model %s: %s (%s), so %s failed", self.classifier.model_id, exc, exc.__cause__, what)
            error: Exception = ResourceExhausted(
                f"model {self.classifier.model_id} on {self.classifier.device} ran out of memory on {what}, "
                f"even on one text of {exc.tokens} tokens alone; send shorter texts or lower its max_length"
            )
        else:
            log.error("%s: %s failed", self.name, what, exc_info=exc)
            error = PassFailed(f"model {self.classifier.model_id} failed on {what}: {type(exc).__name__}: {exc}")
        for item in batch:
            self._settle(item.key, item.future, error=error)

    def _settle(
        self, key: Key, future: asyncio.Future[Logits], logits: Logits = (), error: Exception | None = None
    ) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.done():
            if error is None:
                future.set_result(logits)
            else:
                future.set_exception(error)

    def _fail_all(self, error: Exception) -> None:
        for key, future in list(self._inflight.items()):
            self._settle(key, future, error=error)
        self.clear()
        self._queued_tokens = 0
        self.stats.queued = 0

    def crashed(self, error: BaseException) -> None:
        self._fail_all(Unavailable(f"model {self.classifier.model_id}: the batch collector stopped"))
