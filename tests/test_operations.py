"""Operations: time budgets, graceful drain on SIGTERM, metrics, request ids and JSON logs."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import urllib.request

import grpc
import pytest
from conftest import start_server, stop_server
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reward.v1 import reward_pb2 as pb

# format_exact's regex needs cubic time on this 20 kB text: minutes, not milliseconds.
PATHOLOGICAL = "<end_working_out><SOLUTION>x</SOLUTION>y" * 500


@pytest.fixture(scope="module")
def ops_server(tmp_path_factory):
    running = start_server(
        tmp_path_factory.mktemp("ops"),
        config="sample_timeout_s: 1.0\nworkers: 2\nlog_json: true\nmetrics_port: 0\ngrace_s: 60\n",
    )
    yield running
    stop_server(running)


def test_pathological_regex_is_cut_off_and_the_server_keeps_serving(ops_server) -> None:
    samples = [pb.Sample(completion=PATHOLOGICAL), pb.Sample(completion="<end_working_out><SOLUTION>4</SOLUTION>")]
    stub = ops_server.stub()
    response = stub.Score(pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="format_exact")]), timeout=60)
    scores = list(response.results[0].scores)
    assert math.isnan(scores[0]) and scores[1] == 3.0
    assert [(n.sample_index, n.reason) for n in response.results[0].notes] == [(0, "timed out after 1 s")]
    again = stub.Score(pb.ScoreRequest(samples=samples[1:], rewards=[pb.RewardSpec(name="format_exact")]))
    assert list(again.results[0].scores) == [3.0]


def test_request_ids_and_json_logs(ops_server) -> None:
    ops_server.stub().Score(
        pb.ScoreRequest(
            samples=[pb.Sample(completion="x")], rewards=[pb.RewardSpec(name="xml_integer")], request_id="ops-req-42"
        ),
        timeout=30,
    )
    ops_server.stub().Score(
        pb.ScoreRequest(samples=[pb.Sample(completion="x")], rewards=[pb.RewardSpec(name="xml_integer")]),
        metadata=(("x-request-id", "from-metadata-7"),),
        timeout=30,
    )
    entries = [json.loads(line) for line in ops_server.log().splitlines() if line.startswith("{")]
    assert entries, "no JSON log lines"
    by_id = {e["request_id"]: e for e in entries if e["message"].startswith("Score request_id=")}
    assert "request_id=ops-req-42" in by_id["ops-req-42"]["message"]
    assert "from-metadata-7" in by_id
    assert {"time", "level", "logger", "team", "message"} <= set(by_id["ops-req-42"])


def test_metrics_endpoint(ops_server) -> None:
    ops_server.stub().Score(
        pb.ScoreRequest(
            samples=[pb.Sample(completion="x", fields={"answer": "1"})] * 3,
            rewards=[pb.RewardSpec(name="xml_correctness"), pb.RewardSpec(name="xml_integer")],
        )
    )
    with pytest.raises(grpc.RpcError):
        ops_server.stub().Score(pb.ScoreRequest(samples=[pb.Sample(completion="x")]))
    line = next(line for line in ops_server.log().splitlines() if "metrics on" in line)
    url = line.split("metrics on ")[1].split()[0].rstrip('"')
    score = 'method="/reward.v1.RewardService/Score"'
    # grpc.aio sends an aborted call's status before the interceptor's bookkeeping runs, so the
    # caller can scrape before the INVALID_ARGUMENT count exists: read until it is there (at most 10 s).
    deadline = time.monotonic() + 10
    while True:
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        if f'code="INVALID_ARGUMENT",{score}' in page or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert f'reward_requests_total{{code="OK",{score},team="-",transport="grpc"}}' in page
    assert f'reward_requests_total{{code="INVALID_ARGUMENT",{score},team="-",transport="grpc"}}' in page
    assert f'reward_request_seconds_bucket{{le="0.005",{score},transport="grpc"}}' in page
    assert 'reward_compute_seconds_count{reward="xml_correctness"}' in page
    samples = next(
        float(x.split()[-1])
        for x in page.splitlines()
        if x.startswith('reward_samples_scored_total{reward="xml_integer"}')
    )
    assert samples >= 3
    assert 'reward_sample_timeouts_total{reward="format_exact"}' in page or "reward_sample_timeouts" in page


def test_sigterm_drains_in_flight_work_and_exits_zero(tmp_path) -> None:
    server = start_server(tmp_path, config="sample_timeout_s: 2.0\nworkers: 1\ngrace_s: 120\n")
    try:
        # Three samples that each run into their 2 s budget: a request that takes about 6 s, whatever the load.
        samples = [pb.Sample(completion=PATHOLOGICAL + str(i)) for i in range(3)] + [pb.Sample(completion="ok")]
        request = pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="format_exact")])
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
        statuses: list[int] = []
        watch = health.Watch(health_pb2.HealthCheckRequest(service="reward.v1.RewardService"), timeout=300)
        watcher = threading.Thread(target=lambda: statuses.extend(r.status for r in _until_error(watch)))
        watcher.start()
        outcome: dict = {}

        def call() -> None:
            try:
                outcome["response"] = server.stub().Score(request, timeout=300)
            except grpc.RpcError as exc:
                outcome["error"] = exc

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.0)
        assert caller.is_alive(), f"the request ended before SIGTERM: {outcome}"
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # What a new client sees during the drain: its health check is refused (the README says so).
        fresh = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
        with pytest.raises(grpc.RpcError) as refused:
            fresh.Check(health_pb2.HealthCheckRequest(service="reward.v1.RewardService"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
        caller.join(300)
        assert "error" not in outcome, outcome.get("error")
        result = outcome["response"].results[0]
        scores = list(result.scores)
        assert all(math.isnan(x) for x in scores[:3]) and scores[3] == 0.0
        assert [(n.sample_index, n.kind) for n in result.notes] == [(i, pb.NOTE_KIND_TIME_LIMIT) for i in range(3)]
        assert (result.counts.scored, result.counts.time_limit) == (1, 3)
        assert server.process.wait(120) == 0
        watcher.join(30)
        assert statuses[0] == health_pb2.HealthCheckResponse.SERVING
        assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
        assert "drained: let 1 of 1 call(s) in flight finish" in server.log()
    finally:
        stop_server(server)


def _until_error(stream):
    try:
        yield from stream
    except grpc.RpcError:
        return


def test_a_cancelled_request_stops_its_worker(tmp_path) -> None:
    server = start_server(tmp_path, "--workers", "1")
    try:
        stub = server.stub()
        # ~0.2 s of regex work per sample on one worker: about a minute for the whole request.
        slow = pb.ScoreRequest(
            samples=[
                pb.Sample(completion="<end_working_out><SOLUTION>x</SOLUTION>y" * 150 + str(i)) for i in range(300)
            ],
            rewards=[pb.RewardSpec(name="format_exact")],
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.Score(slow, timeout=2)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The only worker is free again long before the minute the cancelled request needed.
        quick = pb.ScoreRequest(samples=[pb.Sample(completion="ok")], rewards=[pb.RewardSpec(name="format_exact")])
        assert list(stub.Score(quick, timeout=20).results[0].scores) == [0.0]
    finally:
        stop_server(server)
