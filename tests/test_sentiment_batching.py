"""The model's batching worker over the wire: cross-request batches and a bounded queue.

The server runs with batches of 8 texts, a queue of 8 and a max wait of 10 minutes, so a batch
forms exactly when 8 texts wait: what ends up batched together is decided by what the test
sends, not by timing. The worker's debug log (one line per call, per queueing, per batch, with
its counters) is how the test sees the batches.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import pytest
from conftest import RunningServer, start_server, stop_server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_sentiment import classify, label_of, model_dir, pipe  # noqa: F401 - module fixtures shared

from reward.v1 import reward_pb2 as pb
from reward_server.models.synthetic import german_text

CONFIG = """\
workers: 0
log_level: DEBUG
grace_s: 2
enable_sentiment: true
device: cpu
model_max_batch_size: 8
model_max_queue: 8
model_max_wait_ms: 600000
"""


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory, model_dir) -> Iterator[RunningServer]:  # noqa: F811 - the shared fixture
    tmp = tmp_path_factory.mktemp("batching")
    (tmp / "server.yaml").write_text(CONFIG)
    running = start_server(tmp, "--config", str(tmp / "server.yaml"), "--sentiment-model", str(model_dir))
    yield running
    stop_server(running)


_rng = random.Random(11)


def group(completions: int) -> list[pb.Sample]:
    """``completions`` fresh completions sharing one fresh reference: completions + 1 texts for the model."""
    reference = german_text(_rng, 20)
    return [pb.Sample(completion=german_text(_rng, 10), fields={"answer": reference}) for _ in range(completions)]


def request(samples: list[pb.Sample]) -> pb.ScoreRequest:
    return pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="sentiment_match")])


def expected(pipe, samples: list[pb.Sample]) -> list[float]:  # noqa: F811 - the shared fixture
    completions = classify(pipe, [s.completion for s in samples])
    references = classify(pipe, [s.fields["answer"] for s in samples])
    return [1.0 if label_of(c) == label_of(r) else 0.0 for c, r in zip(completions, references, strict=True)]


def wait_for_log(server: RunningServer, offset: int, pattern: str, timeout: float = 60) -> re.Match:
    """The first match of ``pattern`` in the log written after ``offset`` (a liveness bound, not a timing assert)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, server.log()[offset:])
        if match:
            return match
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in the server log:\n{server.log()[offset:]}")


def test_concurrent_requests_are_batched_together(batching_server, pipe) -> None:  # noqa: F811
    groups = [group(1) for _ in range(4)]  # 4 requests × 2 texts = one batch of 8
    offset = len(batching_server.log())
    stub = batching_server.stub()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(stub.Score, request(g), timeout=120) for g in groups]
        responses = [f.result() for f in futures]
    batch = wait_for_log(batching_server, offset, r"batch size=(\d+) requests=(\d+) passes=(\S+) .*\| (.*)")
    assert (batch.group(1), batch.group(2), batch.group(3)) == ("8", "4", "8")
    counters = dict(pair.split("=") for pair in batch.group(4).split())
    assert int(counters["shared_batches"]) >= 1 and counters["queued"] == "0"
    assert len(re.findall(r"batch size=", batching_server.log()[offset:])) == 1
    for g, response in zip(groups, responses, strict=True):
        assert list(response.results[0].scores) == expected(pipe, g)


def test_full_queue_is_resource_exhausted_and_the_server_keeps_serving(batching_server, pipe) -> None:  # noqa: F811
    stub = batching_server.stub()
    waiting, late, filler = group(3), group(4), group(3)  # 4, 5 and 4 texts
    offset = len(batching_server.log())
    pool = ThreadPoolExecutor(2)
    first: Future = pool.submit(stub.Score, request(waiting), timeout=120)
    # Its 4 texts now wait for 4 more (the batch size); the queue holds 8.
    wait_for_log(batching_server, offset, r"call=\d+ queued 4 texts \(4 waiting\)")

    with pytest.raises(grpc.RpcError) as caught:
        stub.Score(request(late), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4 texts are queued and 5 more would pass the limit of 8 (model_max_queue)" in caught.value.details()

    # The server still answers everything else, and nothing of the refused call was queued.
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(batching_server.address))
    reply = health.Check(health_pb2.HealthCheckRequest(service="reward.v1.RewardService"), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    cpu = pb.ScoreRequest(
        samples=[pb.Sample(completion="x", fields={"answer": "1"})], rewards=[pb.RewardSpec(name="xml_integer")]
    )
    assert list(stub.Score(cpu, timeout=10).results[0].scores) == [0.0]
    assert not first.done()

    second: Future = pool.submit(stub.Score, request(filler), timeout=120)  # fills the queue: the batch runs
    assert list(first.result().results[0].scores) == expected(pipe, waiting)
    assert list(second.result().results[0].scores) == expected(pipe, filler)
    pool.shutdown()
    batch = wait_for_log(batching_server, offset, r"batch size=8 requests=2 .*rejected=(\d+)")
    assert int(batch.group(1)) >= 1

    with pytest.raises(grpc.RpcError) as caught:
        stub.Score(request(group(8)), timeout=30)  # 9 texts can never fit
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "9 new texts in one call, but its queue holds at most 8" in caught.value.details()
    assert batching_server.process.poll() is None


def test_identical_texts_in_flight_are_classified_once(batching_server, pipe) -> None:  # noqa: F811
    shared = group(3)  # 4 texts, sent by two callers at once: still 4 texts for the model
    own = group(3)  # 4 more texts: with the shared ones, one batch of 8
    offset = len(batching_server.log())
    stub = batching_server.stub()
    with ThreadPoolExecutor(3) as pool:
        a = pool.submit(stub.Score, request(shared), timeout=120)
        wait_for_log(batching_server, offset, r"call=\d+ queued 4 texts")
        b = pool.submit(stub.Score, request(shared), timeout=120)
        wait_for_log(batching_server, offset, r"call=\d+ texts=6 cache_hits=0 cache_misses=1 joined=4 new=0")
        c = pool.submit(stub.Score, request(own), timeout=120)
        results = [list(f.result().results[0].scores) for f in (a, b, c)]
    assert results == [expected(pipe, shared), expected(pipe, shared), expected(pipe, own)]
    assert re.search(r"batch size=8 requests=2", batching_server.log()[offset:])


def test_health_answers_while_texts_wait_for_their_batch(batching_server) -> None:
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(batching_server.address))
    offset = len(batching_server.log())
    stub = batching_server.stub()
    pending = threading.Thread(target=lambda: stub.Score(request(group(1)), timeout=120))
    pending.start()
    wait_for_log(batching_server, offset, r"call=\d+ queued 2 texts")
    for _ in range(3):
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub.Score(request(group(5)), timeout=120)  # 6 more texts complete the batch
    pending.join()
