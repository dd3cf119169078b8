"""Gathering work from concurrent calls into batches: the one mechanism behind the model batcher and the pool.

A :class:`Collector` holds a queue of items in arrival order and, while the queue is not empty, a collector task
that forms batches from it: a batch leaves as soon as it is full (:meth:`Collector.full`: ``max_batch`` of
weight, by default), or once its oldest item has waited ``max_wait_ms``. At most ``max_in_flight`` batches run at
once, and a batch that is not full leaves only while fewer than ``partial_in_flight`` run: a model keeps its second
slot for a full batch, padded and ready behind the running one, while the worker pool lets a partial batch take
a second worker at once only when it holds enough work (:meth:`Collector.patience`). Items whose caller went away
before their batch formed are dropped (:meth:`Collector.live`).

Subclasses say what a batch is: :meth:`Collector.launch` (awaited by the collector, batch after batch, so
the next batch is prepared while the last one runs) returns the work to run as a task of its own, or None
when the batch has failed already. Used by ``models.batcher.ModelWorker`` (texts → forward passes) and by
``scoring.Coalescer`` (small requests → shared worker trips).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Iterable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)


class Waiting(Protocol):
    """What a collector queues: anything that knows when it arrived (the event loop's clock)."""

    arrived: float


T = TypeVar("T", bound=Waiting)


class Collector(Generic[T]):
    """Forms batches of the items concurrent calls :meth:`put`, and runs them (see the module's doc).

    Example:
        >>> class Printer(Collector):
        ...     async def launch(self, batch):
        ...         return asyncio.sleep(0, print([item.arrived for item in batch]))
        >>> class Item:
        ...     def __init__(self, t):
        ...         self.arrived = t
        >>> async def main():
        ...     printer = Printer("demo", max_batch=2, max_wait_ms=1)
        ...     printer.put([Item(0.0), Item(0.0), Item(0.0)])
        ...     await asyncio.sleep(0.01)
        >>> asyncio.run(main())
        [0.0, 0.0]
        [0.0]
    """

    def __init__(
        self,
        name: str,
        max_batch: int,
        max_wait_ms: float,
        max_in_flight: int = 1,
        partial_in_flight: int | None = None,
    ) -> None:
        self.name = name
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.max_in_flight = max_in_flight
        self.partial_in_flight = max_in_flight if partial_in_flight is None else partial_in_flight
        self.queue: deque[T] = deque()
        #: Weight of the queued items (:meth:`weight`).
        self.queued = 0
        #: Batches handed to :meth:`launch`'s work and not finished.
        self.running = 0
        self._wake: asyncio.Event | None = None
        #: Whether a new item can change what the collector waits for (else only a full batch wakes it).
        self._put_wakes = False
        self._collector: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    # -- what a subclass may change ----------------------------------------------------------------------------
    def weight(self, item: T) -> int:
        """How much of ``max_batch`` an item takes."""
        return 1

    def live(self, item: T) -> bool:
        """False for an item nobody waits for any more: it is dropped instead of batched."""
        return True

    def full(self) -> bool:
        """A batch is ready to leave without waiting for more."""
        return self.queued >= self.max_batch

    def in_flight(self) -> int:
        """Batches (or other work sharing the same capacity) running now."""
        return self.running

    def patience(self) -> float | None:
        """How long after its oldest item arrived a batch that is not full leaves, as things stand, in seconds;
        None: not before capacity frees up (a wake)."""
        return self.max_wait_ms / 1000 if self.in_flight() < self.partial_in_flight else None

    def limit(self) -> int:
        """Most weight the next batch may take (at least one item goes, whatever its weight)."""
        return self.max_batch

    def taken(self, batch: list[T]) -> None:
        """Called with each batch as it leaves the queue (counters)."""

    def dropped(self, item: T) -> None:
        """Called with each item that left the queue because nobody waits for it."""

    async def launch(self, batch: list[T]) -> Awaitable[None] | None:
        """The work that runs ``batch`` (awaited in a task of its own), or None when the batch failed already."""
        raise NotImplementedError

    def crashed(self, error: BaseException) -> None:
        """The collector task failed (a bug): a subclass fails whatever waits."""

    # -- the mechanism -------------------------------------------------------------------------------------------
    def put(self, items: Iterable[T]) -> None:
        """Queue items (their ``arrived`` set by the caller) and make sure a collector is running."""
        weight = self.weight
        for item in items:
            self.queue.append(item)
            self.queued += weight(item)
        if self._collector is None or self._collector.done():
            if self._closed:
                return
            # A fresh event too: an event belongs to the loop it first waited in (tests use several loops).
            self._wake = asyncio.Event()
            self._collector = asyncio.get_running_loop().create_task(self._collect(), name=f"collect {self.name}")
            self._collector.add_done_callback(self._collector_done)
        elif self._put_wakes or self.full():
            self.wake()

    def wake(self) -> None:
        """Look again: items arrived or capacity was freed."""
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        """Stop collecting and cancel the batches running; the subclass fails what still waits."""
        self._closed = True
        tasks = [t for t in (self._collector, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def clear(self) -> None:
        """Forget the queued items (their callers are told by the subclass)."""
        self.queue.clear()
        self.queued = 0

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        while self.queue:
            while self.in_flight() >= self.max_in_flight:
                self._put_wakes = False  # only capacity matters
                wake.clear()
                await wake.wait()
            # Wait for the batch to fill, but never longer than its patience after its oldest item arrived (items
            # that queued up while capacity was taken have waited already and go at once). Without patience (no
            # capacity for a partial batch), only a full one may go ahead.
            while self.queue and not self.full():
                patience = self.patience()
                remaining = None if patience is None else self.queue[0].arrived + patience - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                # Under the plain window's timer only a full batch changes anything; otherwise any new item may.
                self._put_wakes = patience is None or patience * 1000 > self.max_wait_ms
                wake.clear()
                timer = loop.call_later(remaining, wake.set) if remaining is not None else None
                try:
                    await wake.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
            self._put_wakes = False
            batch = self._take()
            if not batch:
                continue
            work = await self.launch(batch)
            if work is None:
                continue
            self.running += 1
            task = loop.create_task(self._finish(work))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[T]:
        """The next batch, oldest first, within :meth:`limit`; items nobody waits for are dropped on the way."""
        limit, weight, live = self.limit(), self.weight, self.live
        batch: list[T] = []
        total = 0
        while self.queue:
            item = self.queue[0]
            w = weight(item)
            if not live(item):
                self.queue.popleft()
                self.queued -= w
                self.dropped(item)
                continue
            if batch and total + w > limit:
                break
            self.queue.popleft()
            self.queued -= w
            batch.append(item)
            total += w
        if batch:
            self.taken(batch)
        return batch

    async def _finish(self, work: Awaitable[None]) -> None:
        try:
            await work
        finally:
            self.running -= 1
            self.wake()

    def _collector_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: the batch collector stopped", self.name, exc_info=task.exception())
            self.crashed(task.exception())  # type: ignore[arg-type]
