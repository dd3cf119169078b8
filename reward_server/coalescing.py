"""Small requests' CPU work, coalesced into shared worker trips (issue 17 §2): the worker pool's user of the server's
one batching mechanism, ``batching.Collector``, as ``models.batcher.ModelWorker`` is the models'.

Current OpenRLHF, slime, verl's reward loop and AReaL send one sample per call, many calls at once. A request of at
most :data:`COALESCE_MAX_SAMPLES` samples whose CPU work is one task (``scoring.Scorer`` decides) waits here for
others, over gRPC and HTTP alike (both call the same scorer): a trip to a worker leaves once that many samples wait
or the oldest request has waited ``max_wait_ms`` (default :data:`COALESCE_MAX_WAIT_MS`), and only while a worker is
free (the tasks of larger requests, which go to the pool directly, take workers too). A second worker is taken only
for at least ``planning.MIN_TASK_MS`` of estimated work (a trip costs the event loop more than a tiny task saves),
and a trip takes an equal part of what waits for each worker, as long as each part is worth a trip.

Within a trip, requests that ask for the same per-sample rewards with the same params (and send the same kinds of
input) are scored as one task (``worker.Shared``): each reward runs once over all their samples, and the worker cuts
the results back into each request's, so a request gets exactly what it would alone (see ``worker._run_shared``).
Other requests (a tf-idf group, a TRL function, other rewards) ride in the same trip as tasks of their own. A
request cancelled while it waits is dropped; one cancelled during its trip stops its worker only when it rode alone
or every request of its shared task has gone too (the others still want their scores).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from reward_server.batching import Collector
from reward_server.calls import Job
from reward_server.cancellation import CancelBoard
from reward_server.planning import MIN_TASK_MS
from reward_server.worker import PartResult, Shared, Task, run_trip

#: A request of at most this many samples whose CPU work is one task waits to share a trip; a trip holds at most
#: this many samples (a larger request alone is cut into tasks for several workers instead).
COALESCE_MAX_SAMPLES = 256
#: How long a small request waits for others to share its trip while a worker is free, in milliseconds.
COALESCE_MAX_WAIT_MS = 2.0
#: How long small requests whose work seems too small for a trip of its own wait for a running trip to come back
#: before they take a free worker anyway, in milliseconds.
COALESCE_BUSY_WAIT_MS = 20.0


@dataclass(eq=False)
class Small:
    """One small request's CPU work, waiting for a trip."""

    task: Task
    #: Requests with equal keys are scored as one task (None: this one never is, see :func:`share_key`).
    key: Hashable | None
    size: int
    #: Estimated worker milliseconds (``planning.CostModel``).
    cost: float
    future: asyncio.Future[list[PartResult]]
    arrived: float


def share_key(jobs: Sequence[Job], task: Task) -> Hashable | None:
    """What must be equal for requests to be scored as one task: the rewards, in order, with their params, and the
    names of the typed fields a reward reads; None when a reward may not be shared (one that scores the batch as a
    whole or by groups, or a TRL function, which sees the batch; see ``Job.share``).

    Example:
        >>> import reward_server.rewards
        >>> from reward_server.registry import REGISTRY
        >>> task = Task(["c"], {}, [])
        >>> share_key([Job(REGISTRY.get("xml_tag_count"), {}, 1.0)], task)
        (('xml_tag_count', ()),)
        >>> share_key([Job(REGISTRY.get("tfidf_similarity"), {}, 1.0)], task) is None
        True
    """
    key = tuple(job.share for job in jobs)
    if None in key:
        return None
    if task.typed_fields:  # a reward reads every typed field of its sample: the same names, in the same order
        return (*key, tuple(task.typed_fields))
    return key


class Coalescer(Collector[Small]):
    """Gathers small requests into shared trips to the worker pool (see the module's doc)."""

    def __init__(
        self,
        executor: Callable[[], Executor],
        slots: int,
        board: CancelBoard | None = None,
        max_wait_ms: float = COALESCE_MAX_WAIT_MS,
    ) -> None:
        super().__init__("worker pool", max_batch=COALESCE_MAX_SAMPLES, max_wait_ms=max_wait_ms, max_in_flight=slots)
        #: The pool the trips go to (read per trip: a broken pool is replaced in place).
        self._executor = executor
        self.board = board
        #: Tasks of larger requests, sent to the pool directly: they take workers too.
        self.others = 0
        #: Estimated worker milliseconds of the queued requests.
        self.queued_cost = 0.0
        #: Trips made, trips that carried several requests, the requests those carried, and the requests that
        #: were scored as part of a shared task.
        self.trips = 0
        self.shared_trips = 0
        self.shared_requests = 0
        self.merged_requests = 0

    async def score(self, task: Task, key: Hashable | None, size: int, cost: float) -> list[PartResult]:
        """The results of a small request's one task, once its trip is back."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[PartResult]] = loop.create_future()
        self.queued_cost += cost
        self.put([Small(task, key, size, cost, future, loop.time())])
        return await future  # cancelled: dropped from the queue, or its result ignored

    def weight(self, item: Small) -> int:
        return item.size

    def live(self, item: Small) -> bool:
        return not item.future.done()

    def in_flight(self) -> int:
        return self.running + self.others

    def patience(self) -> float | None:
        """A partial trip takes an idle pool after the window, and one more worker after the window when it holds
        enough work to be worth a trip of its own; otherwise it waits for the running trips, but not longer than
        :data:`COALESCE_BUSY_WAIT_MS` for a free worker (a reward the cost model has not timed yet may be slow)."""
        running = self.in_flight()
        if running >= self.max_in_flight:
            return None
        if running == 0 or self.queued_cost >= MIN_TASK_MS:
            return self.max_wait_ms / 1000
        return COALESCE_BUSY_WAIT_MS / 1000

    def limit(self) -> int:
        """An equal part of what waits for each worker, each part worth a trip (at most a full trip).

        For each worker, not each free one: a worker that frees up a moment later takes its part then, instead of
        idling while one worker works through everything.
        """
        trips = max(1, min(self.max_in_flight, int(self.queued_cost / MIN_TASK_MS)))
        return min(self.max_batch, -(-self.queued // trips))

    def taken(self, batch: list[Small]) -> None:
        self.queued_cost = self.queued_cost - sum(item.cost for item in batch) if self.queue else 0.0

    def dropped(self, item: Small) -> None:
        self.queued_cost = self.queued_cost - item.cost if self.queue else 0.0

    async def launch(self, batch: list[Small]) -> Awaitable[None] | None:
        items, order = self._trip(batch)
        try:
            trip = asyncio.get_running_loop().run_in_executor(self._executor(), run_trip, items)
        except RuntimeError as exc:  # the pool is shut down (a reload retired it): its callers hear why
            _settle(order, [exc] * len(order))
            return None
        self.trips += 1
        if len(order) > 1:
            self.shared_trips += 1
            self.shared_requests += len(order)
        return self._back(trip, order)

    async def _back(self, trip: asyncio.Future, order: list[Small]) -> None:
        try:
            results = await trip
        except Exception as exc:  # noqa: BLE001 - a broken pool: every request of the trip hears it
            results = [exc] * len(order)
        _settle(order, results)

    def _trip(self, batch: list[Small]) -> tuple[list[Task | Shared], list[Small]]:
        """The trip's items (a request's task, or one shared by requests with the same key) and the requests in
        the order of the results ``worker.run_trip`` returns."""
        groups: dict[Hashable, list[Small]] = {}
        for item in batch:
            groups.setdefault(item if item.key is None else item.key, []).append(item)
        items: list[Task | Shared] = []
        order: list[Small] = []
        for members in groups.values():
            order.extend(members)
            if len(members) == 1:
                items.append(members[0].task)
                continue
            slot = self.board.open() if self.board is not None else None
            items.append(Shared.of([m.task for m in members], slot))
            self.merged_requests += len(members)
            if slot is not None:
                gone = functools.partial(self._gone, slot, [len(members)])
                for member in members:
                    member.future.add_done_callback(gone)
        return items, order

    def _gone(self, slot: int, left: list[int], future: asyncio.Future) -> None:
        """A shared task's worker stops once every request in it is cancelled (the others want their scores)."""
        if future.cancelled():
            left[0] -= 1
            if left[0] == 0 and self.board is not None:
                self.board.cancel(slot)


def _settle(order: Sequence[Small], results: Sequence[list[PartResult] | BaseException]) -> None:
    for item, result in zip(order, results, strict=True):
        if item.future.done():
            continue  # its caller went away
        if isinstance(result, BaseException):
            item.future.set_exception(result)
        else:
            item.future.set_result(result)
