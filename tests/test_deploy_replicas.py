"""Scale-out on loopback: real reward server replicas behind one round_robin client, and the image's health probe.

This is the mechanism the Kubernetes headless Service relies on (one name, many addresses, the client spreads calls);
here the addresses are given as an ``ipv4:`` list because these machines run no cluster DNS.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from conftest import REPO, RunningServer, run_module, start_server, stop_server

from reward.v1 import reward_pb2 as pb
from reward.v1 import reward_pb2_grpc

SCORE_LINE = re.compile(r"Score request_id=(\S+)")
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
CALLS = 24


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory):
    """Two independent reward server processes, each on its own free port."""
    started = [start_server(tmp_path_factory.mktemp(f"replica{i}"), "--workers", "1") for i in range(2)]
    yield started
    for server in started:
        stop_server(server)


def port_of(server: RunningServer) -> str:
    return server.address.rsplit(":", 1)[1]


def score_ids(server: RunningServer) -> list[str]:
    """Request ids of the Score calls this replica logged (one INFO line per call)."""
    return SCORE_LINE.findall(server.log())


def test_round_robin_client_spreads_score_calls_over_both_replicas(replicas) -> None:
    target = "ipv4:" + ",".join(f"127.0.0.1:{port_of(s)}" for s in replicas)
    before = [set(score_ids(s)) for s in replicas]
    with grpc.insecure_channel(target, options=[("grpc.service_config", ROUND_ROBIN)]) as channel:
        # Wait until the channel is READY: round_robin then connects to every address of the target.
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        sent = []
        for i in range(CALLS):
            request_id = f"spread-{i}"
            response = stub.Score(
                pb.ScoreRequest(
                    samples=[pb.Sample(completion="<answer>\n42\n</answer>", fields={"answer": "42"})],
                    rewards=[pb.RewardSpec(name="xml_correctness")],
                    request_id=request_id,
                ),
                timeout=30,
            )
            assert list(response.results[0].scores) == [2.0]
            sent.append(request_id)
    # Each replica logs the id of every call it served: together exactly the calls sent, and both took a share.
    served = [set(score_ids(s)) - b for s, b in zip(replicas, before, strict=True)]
    assert served[0] | served[1] == set(sent)
    assert not served[0] & served[1]
    assert served[0] and served[1], f"one replica got no traffic: {[len(s) for s in served]}"
    print(f"Score calls per replica over {CALLS} calls: {[len(s) for s in served]}")


def test_pick_first_default_would_pin_every_call_to_one_replica(replicas) -> None:
    """The contrast that makes round_robin necessary: gRPC's default policy uses one address for everything."""
    target = "ipv4:" + ",".join(f"127.0.0.1:{port_of(s)}" for s in replicas)
    before = [set(score_ids(s)) for s in replicas]
    with grpc.insecure_channel(target) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        for i in range(8):
            stub.Score(
                pb.ScoreRequest(
                    samples=[pb.Sample(completion="x")],
                    rewards=[pb.RewardSpec(name="xml_tag_count")],
                    request_id=f"pinned-{i}",
                ),
                timeout=30,
            )
    served = [len(set(score_ids(s)) - b) for s, b in zip(replicas, before, strict=True)]
    assert sorted(served) == [0, 8]


def healthcheck(*args: str) -> subprocess.CompletedProcess:
    return run_module("reward_server.healthcheck", *args)


def test_healthcheck_reports_serving_replica(replicas) -> None:
    result = healthcheck("--address", replicas[0].address)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{replicas[0].address} reward.v1.RewardService: SERVING"
    whole = healthcheck("--address", replicas[0].address, "--service", "")
    assert whole.returncode == 0 and whole.stdout.strip().endswith("(server): SERVING")


def test_healthcheck_fails_for_unknown_service_and_dead_address(replicas) -> None:
    unknown = healthcheck("--address", replicas[0].address, "--service", "no.such.Service")
    assert unknown.returncode == 1
    assert "NOT_FOUND" in unknown.stderr
    dead = healthcheck("--address", "127.0.0.1:1", "--timeout", "2")
    assert dead.returncode == 1
    assert "127.0.0.1:1" in dead.stderr and ("UNAVAILABLE" in dead.stderr or "DEADLINE_EXCEEDED" in dead.stderr)


def dockerfile_healthcheck(target: str) -> list[str]:
    """The exec-form HEALTHCHECK CMD of one Dockerfile stage."""
    stage = re.split(r"^FROM ", (REPO / "Dockerfile").read_text(), flags=re.M)
    text = next(s for s in stage if re.match(rf"\S+ AS {re.escape(target)}\s", s))
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])\s*$", text.replace("\\\n", " "), flags=re.M)
    assert match, f"no HEALTHCHECK in stage {target}"
    return json.loads(match.group(1))


def test_image_healthcheck_command_passes_against_live_server_and_fails_after_stop(tmp_path: Path) -> None:
    """The reward-server image's HEALTHCHECK, run as written (only the port differs: tests pick a free one)."""
    command = dockerfile_healthcheck("reward-server")
    assert command[:3] == ["python", "-m", "reward_server.healthcheck"]
    server = start_server(tmp_path, "--workers", "1")
    probe = [sys.executable, *command[1:]]
    probe[probe.index("127.0.0.1:50051")] = server.address
    try:
        ok = subprocess.run(probe, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, shlex.join(probe) + "\n" + ok.stderr
    finally:
        stop_server(server)
    down = subprocess.run(probe, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert down.returncode == 1
