"""Coalescing (issue 17 §2): the one batching mechanism (``batching.Collector``) and the worker pool's use of it.

Small requests that arrive together share worker trips, and requests with the same per-sample rewards are scored as
one task; each request must still get exactly what it gets alone (scores, notes, extra columns), its own failure,
and its own cancellation. Most tests run the real scorer on a thread pool (fast); one runs it on spawned workers.
"""

from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import reward_server.rewards  # noqa: F401 - registers the catalogue
from reward_server import worker
from reward_server.batching import Collector
from reward_server.calls import RewardCall, RewardOutcome, Samples
from reward_server.cancellation import CancelBoard
from reward_server.config import ServerConfig
from reward_server.declare import registering_into, sample_reward
from reward_server.errors import InvalidArgument
from reward_server.pool import make_executor, warm_up
from reward_server.registry import REGISTRY, BatchResult, Registry, Reward, SampleScore
from reward_server.scoring import Scorer

# -- the mechanism ---------------------------------------------------------------------------------------------------


class Item:
    def __init__(self, name: str, arrived: float) -> None:
        self.name, self.arrived, self.gone = name, arrived, False


class Recorder(Collector[Item]):
    """Runs each batch for ``hold`` (an event the test sets) and records it."""

    def __init__(self, **settings) -> None:
        super().__init__("test", **settings)
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()

    def live(self, item: Item) -> bool:
        return not item.gone

    async def launch(self, batch: list[Item]):
        self.batches.append([item.name for item in batch])
        return self.release.wait()


def items(loop: asyncio.AbstractEventLoop, *names: str) -> list[Item]:
    return [Item(name, loop.time()) for name in names]


def test_a_full_batch_leaves_at_once_and_a_partial_one_after_the_window() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        collector = Recorder(max_batch=2, max_wait_ms=50)
        collector.release.set()
        collector.put(items(loop, "a", "b", "c"))
        await asyncio.sleep(0.01)
        assert collector.batches == [["a", "b"]]  # full: no waiting; "c" waits for its window
        await asyncio.sleep(0.08)
        assert collector.batches == [["a", "b"], ["c"]]
        await asyncio.sleep(0.01)
        assert collector._collector is not None and collector._collector.done()  # idle: the collector ends...
        collector.put(items(loop, "d", "e"))  # ...and starts again with the next items
        await asyncio.sleep(0.01)
        assert collector.batches[-1] == ["d", "e"]

    asyncio.run(main())


def test_in_flight_limits_and_partial_batches_wait_for_capacity() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        # As a model: two batches in flight at most, a partial one only when nothing runs.
        collector = Recorder(max_batch=2, max_wait_ms=0, max_in_flight=2, partial_in_flight=1)
        collector.put(items(loop, "a"))
        await asyncio.sleep(0.01)
        collector.put(items(loop, "b"))  # partial, and a batch runs: waits
        await asyncio.sleep(0.02)
        assert collector.batches == [["a"]]
        collector.put(items(loop, "c"))  # now full: goes ahead into the second slot
        await asyncio.sleep(0.01)
        assert collector.batches == [["a"], ["b", "c"]]
        collector.put(items(loop, "d", "e"))  # full, but both slots are taken
        await asyncio.sleep(0.02)
        assert len(collector.batches) == 2 and collector.in_flight() == 2
        collector.release.set()
        await asyncio.sleep(0.01)
        assert collector.batches[-1] == ["d", "e"] and collector.queued == 0

    asyncio.run(main())


def test_items_nobody_waits_for_are_dropped() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        collector = Recorder(max_batch=4, max_wait_ms=20)
        collector.release.set()
        waiting = items(loop, "a", "b", "c")
        collector.put(waiting)
        waiting[1].gone = True
        await asyncio.sleep(0.05)
        assert collector.batches == [["a", "c"]] and collector.queued == 0

    asyncio.run(main())


# -- the worker pool's coalescing --------------------------------------------------------------------------------


def _registry() -> Registry:
    """The catalogue plus rewards that exercise what sharing a task could get wrong."""
    registry = REGISTRY.copy()
    with registering_into(registry):

        @sample_reward("tagged")
        def tagged(completion: str) -> SampleScore | float:
            """Extra text only for some samples, and an empty one for others: alone, a request has the column only
            when one of its samples wrote it."""
            if completion.startswith("plain"):
                return 0.5
            return SampleScore(1.0, {"tag": "" if completion.startswith("empty") else completion[:3]})

        @sample_reward("slow")
        def slow(completion: str) -> float:
            """Waits until the test lets it go."""
            RELEASE.wait(10)
            return 1.0

    def refusing(batch, **params) -> BatchResult:
        if "refuse" in batch.completions:
            raise InvalidArgument("this sample is refused")
        return BatchResult([1.0] * len(batch))

    registry.add(Reward("refusing", (), "refuses a batch that holds 'refuse'", (), refusing, split="sample"))
    return registry


RELEASE = threading.Event()
REGISTRY_UNDER_TEST = _registry()


@pytest.fixture
def scorer():
    executor = ThreadPoolExecutor(2, initializer=worker.use_registry, initargs=(REGISTRY_UNDER_TEST,))
    board = CancelBoard()
    yield Scorer(REGISTRY_UNDER_TEST, executor, cancel_board=board)
    RELEASE.set()
    executor.shutdown(wait=True)


def same(a: list[RewardOutcome], b: list[RewardOutcome]) -> bool:
    def plain(outcomes):
        return [
            ([None if math.isnan(s) else s for s in o.scores], o.notes, o.extras, o.name, o.weight) for o in outcomes
        ]

    return plain(a) == plain(b)


async def together(scorer: Scorer, requests, calls) -> list:
    return await asyncio.gather(*(scorer.score(r, calls) for r in requests), return_exceptions=True)


def test_coalesced_requests_get_exactly_what_they_get_alone(scorer) -> None:
    completions = ["<answer>42</answer>", "plain", "empty", "xyz \\boxed{7}", "<answer>7</answer>", "plain two"]
    solutions = ["7", "not math at all"]  # the second one does not parse: a NaN with a note
    requests = [Samples([c], [{"answer": "42", "solution": solutions[i % 2]}]) for i, c in enumerate(completions * 8)]
    calls = [
        RewardCall("xml_correctness"),
        RewardCall("tagged", 0.5),
        RewardCall("accuracy_reward", 2.0),  # extra columns for every sample, notes for some
    ]

    async def main():
        alone = [await scorer.score(r, calls) for r in requests]  # one at a time: each trip holds one request
        merged_before = scorer.coalescer.merged_requests
        shared = await together(scorer, requests, calls)
        return alone, shared, scorer.coalescer.merged_requests - merged_before

    alone, shared, merged = asyncio.run(main())
    assert merged > 0, "no request shared a task, so this test checks nothing"
    for (own, own_total), (got, got_total) in zip(alone, shared, strict=True):
        assert same(got, own)
        assert [None if math.isnan(t) else t for t in got_total] == [None if math.isnan(t) else t for t in own_total]
    by_completion = {c: got for c, (got, _) in zip(completions * 8, shared, strict=True)}
    assert "tag" not in by_completion["plain"][1].extras  # no sample of its own wrote the column
    assert by_completion["empty"][1].extras == {"tag": [""]}  # its sample wrote an empty text


def test_one_requests_failure_in_a_shared_task_is_its_own(scorer) -> None:
    requests = [Samples([c]) for c in ["fine", "refuse", "fine too", "also fine"]]

    async def main():
        return await together(scorer, requests, [RewardCall("refusing"), RewardCall("xml_tag_count")])

    results = asyncio.run(main())
    assert scorer.coalescer.merged_requests == 4  # one shared task, which raised: each request ran again alone
    assert isinstance(results[1], InvalidArgument) and "refused" in str(results[1])
    for result in (results[0], results[2], results[3]):
        outcomes, totals = result
        assert outcomes[0].scores == [1.0] and len(totals) == 1


def test_a_bad_param_fails_only_its_own_request(scorer) -> None:
    async def main():
        good = [scorer.score(Samples(["<answer>1</answer>"]), [RewardCall("xml_tag_count")]) for _ in range(5)]
        bad = scorer.score(Samples(["x"]), [RewardCall("xml_tag_count", None, {"no_such_param": 1.0})])
        return await asyncio.gather(*good, bad, return_exceptions=True)

    *good, bad = asyncio.run(main())
    assert isinstance(bad, InvalidArgument) and "no_such_param" in str(bad)
    assert all(not isinstance(g, BaseException) for g in good)


def test_a_cancelled_request_does_not_cancel_the_others_it_shares_a_trip_with(scorer) -> None:
    RELEASE.clear()
    board = scorer.cancel_board
    calls = [RewardCall("slow"), RewardCall("xml_tag_count")]

    async def main():
        # One request holds a worker in "slow"; the next three queue behind it, then take the other worker together
        # as one shared task (a worker free for COALESCE_BUSY_WAIT_MS), and block in "slow" too.
        first = asyncio.ensure_future(scorer.score(Samples(["a"]), calls))
        await asyncio.sleep(0.05)
        later = [asyncio.ensure_future(scorer.score(Samples([c]), calls)) for c in "bcd"]
        await asyncio.sleep(0.05)
        later[0].cancel()
        await asyncio.sleep(0.01)
        RELEASE.set()
        await first
        await asyncio.sleep(0.05)
        return first, later

    first, later = asyncio.run(main())
    assert later[0].cancelled()
    assert [t.result()[0][0].scores for t in later[1:]] == [[1.0], [1.0]]
    assert first.result()[0][0].scores == [1.0]
    assert scorer.coalescer.merged_requests == 3
    assert sum(board.flags[:64]) == 1, "only the cancelled request's own flag is up, not its shared task's"


def test_a_shared_tasks_workers_stop_only_when_all_its_requests_are_gone(scorer) -> None:
    RELEASE.clear()
    board = scorer.cancel_board
    calls = [RewardCall("slow")]

    async def main():
        pair = [asyncio.ensure_future(scorer.score(Samples([c]), calls)) for c in "bc"]
        await asyncio.sleep(0.05)  # their window has passed: one shared task, blocked in "slow"
        assert scorer.coalescer.merged_requests == 2
        pair[0].cancel()
        await asyncio.sleep(0.01)
        after_one = list(board.flags[:3])
        pair[1].cancel()
        await asyncio.sleep(0.01)
        after_both = list(board.flags[:3])
        RELEASE.set()
        await asyncio.gather(*pair, return_exceptions=True)
        return after_one, after_both

    after_one, after_both = asyncio.run(main())
    # Slots 0 and 1 are the requests' own (raised as each is cancelled; the shared task does not read them),
    # slot 2 the shared task's: raised only once both requests are gone.
    assert after_one == [1, 0, 0]
    assert after_both == [1, 1, 1]


def test_single_sample_calls_on_spawned_workers_score_like_one_batch() -> None:
    from bench.workload import SEED_REWARDS, make_batch

    batch = make_batch(prompts=8, per_prompt=8, size=600)
    fields = batch.fields()
    shareable = [RewardCall(name) for name in SEED_REWARDS if name != "tfidf_similarity"]
    grouped = [RewardCall("xml_tag_count"), RewardCall("tfidf_similarity", 0.5)]  # rides along, never shared
    samples = [Samples([c], [f]) for c, f in zip(batch.completions, fields, strict=True)]

    async def main():
        board = CancelBoard()
        executor = make_executor(ServerConfig(workers=2), board)
        try:
            await warm_up(executor, 2)
            scorer = Scorer(REGISTRY, executor, cancel_board=board)
            single = await asyncio.gather(
                *(scorer.score(s, shareable if i % 2 else grouped) for i, s in enumerate(samples))
            )
            whole = await scorer.score(Samples(batch.completions, fields), shareable + grouped)
            return single, whole[0], scorer.coalescer
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    single, whole, coalescer = asyncio.run(main())
    assert coalescer.trips <= len(samples) / 4 and coalescer.merged_requests >= len(samples) / 4
    by_name = {o.name: o for o in whole}
    for i, (own, totals) in enumerate(single):
        assert len(totals) == 1
        for got in own:
            if got.name != "tfidf_similarity":  # alone, a sample is its own reference group
                assert got.scores == [by_name[got.name].scores[i]], got.name
