"""Failures that speak, on the server (issue 18): a broken reward is seen by the caller (a note of kind
REWARD_ERROR, per-kind counts), by the operator (a WARNING naming the reward, the exception and the plugin's
file:line, rate-limited) and by the metrics; a port in use is one line and exit 2; reloads and refusals are logged.

Real servers as processes, real plugin files written here, real sockets on loopback.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from conftest import REPO, free_port, start_server, stop_server

from reward.v1 import reward_pb2 as pb

PLUGIN = '''
def broken_reward(completions, **kwargs):
    """Always raises, as a reward with a bug does."""
    return [len(c) + None for c in completions]


def fine_reward(completions, **kwargs):
    """The length of each completion."""
    return [float(len(c)) for c in completions]
'''


def _metric(port: int, name: str, labels: str) -> float:
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    match = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", page, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _wait_for(server, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{server.log()[-3000:]}"
        time.sleep(0.1)
    return server.log()


@pytest.fixture(scope="module")
def plugin_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failures")
    plugin = tmp / "my_rewards.py"
    plugin.write_text(PLUGIN)
    metrics_port = free_port()
    server = start_server(tmp, "--workers", "1", "--rewards-from", str(plugin), "--metrics-port", str(metrics_port))
    yield server, plugin, metrics_port
    stop_server(server)


def _request(*names: str, n: int = 3) -> pb.ScoreRequest:
    samples = [pb.Sample(completion="x" * (i + 1), prompt_text="q") for i in range(n)]
    return pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name=name) for name in names])


def test_startup_names_the_plugin_rewards(plugin_server) -> None:
    server, plugin, _ = plugin_server
    line = next(line for line in server.log().splitlines() if "plugin rewards:" in line)
    assert "broken_reward" in line and "fine_reward" in line and str(plugin) in line


def test_a_raising_plugin_reward_is_a_reward_error_the_caller_the_log_and_the_metrics_see(plugin_server) -> None:
    server, plugin, metrics_port = plugin_server
    stub = server.stub()
    before = _metric(metrics_port, "reward_sample_outcomes_total", 'kind="reward_error",reward="broken_reward"')
    response = stub.Score(_request("broken_reward", "fine_reward"), timeout=60)
    broken, fine = response.results
    assert all(math.isnan(s) for s in broken.scores)
    assert [n.kind for n in broken.notes] == [pb.NOTE_KIND_REWARD_ERROR] * 3
    assert "TypeError" in broken.notes[0].reason
    assert (broken.counts.scored, broken.counts.reward_error) == (0, 3)
    # The healthy reward of the same request keeps its scores, and says so.
    assert list(fine.scores) == [1.0, 2.0, 3.0] and list(fine.notes) == []
    assert (fine.counts.scored, fine.counts.reward_error) == (3, 0)
    # The operator's line: the reward, the exception and where in the plugin it was raised (line 4 of PLUGIN).
    log = _wait_for(server, "reward broken_reward: reward error")
    warning = next(line for line in log.splitlines() if "reward broken_reward: reward error" in line)
    assert "WARNING" in warning and "TypeError" in warning and f"{plugin}:4" in warning
    after = _metric(metrics_port, "reward_sample_outcomes_total", 'kind="reward_error",reward="broken_reward"')
    assert after - before == 3
    scored = _metric(metrics_port, "reward_sample_outcomes_total", 'kind="scored",reward="fine_reward"')
    assert scored >= 3


def test_repeats_of_the_same_error_are_folded_into_a_count(plugin_server) -> None:
    server, _, _ = plugin_server
    stub = server.stub()
    lines_before = server.log().count("reward broken_reward: reward error")
    for _ in range(5):
        stub.Score(_request("broken_reward"), timeout=60)
    time.sleep(0.5)
    # Within the window, five more failing calls add no line (the next line, a minute on, carries the count).
    assert server.log().count("reward broken_reward: reward error") == max(lines_before, 1)


def test_refused_calls_are_logged_with_the_team_and_the_reason(plugin_server) -> None:
    server, _, _ = plugin_server
    stub = server.stub()
    for _ in range(20):  # a flood: one line
        with pytest.raises(grpc.RpcError) as caught:
            stub.Score(_request("no_such_reward"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    log = _wait_for(server, "refused /reward.v1.RewardService/Score for team -: INVALID_ARGUMENT")
    assert log.count("refused /reward.v1.RewardService/Score for team -: INVALID_ARGUMENT") == 1
    assert "no_such_reward" in log


def test_a_trl_function_refuses_mixed_prompt_shapes_up_front(plugin_server) -> None:
    server, _, _ = plugin_server
    samples = [
        pb.Sample(completion="a", prompt_text="plain"),
        pb.Sample(completion="b", prompt=[pb.ChatMessage(role="user", content="chat")]),
    ]
    with pytest.raises(grpc.RpcError) as caught:
        server.stub().Score(pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="fine_reward")]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[1] has a chat prompt but samples[0] has a plain-text prompt" in caught.value.details()


def test_a_reload_names_added_and_removed_rewards_and_warns_about_one_in_use(tmp_path) -> None:
    plugin = tmp_path / "live.py"
    plugin.write_text(PLUGIN)
    server = start_server(tmp_path, "--workers", "0", "--rewards-from", str(plugin))
    try:
        server.stub().Score(_request("fine_reward"), timeout=60)
        plugin.write_text(PLUGIN.replace("fine_reward", "renamed_reward"))
        os.kill(server.process.pid, signal.SIGHUP)
        log = _wait_for(server, "reloaded reward code (SIGHUP)")
        line = next(line for line in log.splitlines() if "reloaded reward code" in line)
        assert "added: renamed_reward" in line and "removed: fine_reward" in line
        warning = _wait_for(server, "removed reward(s) that calls used")
        assert "WARNING" in warning and "fine_reward" in warning.split("removed reward(s) that calls used")[1]
    finally:
        stop_server(server)


def _start_expecting_exit(port: int, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "reward_server", "--port", str(port), "--workers", "1", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - start


def test_a_port_held_by_another_program_is_one_line_and_exit_2() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        done, elapsed = _start_expecting_exit(holder.getsockname()[1])
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "Address already in use" in lines[0], lines
    # Before any worker starts: the interpreter's imports, not a pool's start-up (a generous bound for 2 busy
    # cores; a worker pool plus its warm-up alone takes longer).
    assert elapsed < 15, elapsed


def test_an_http_port_in_use_is_one_line_and_exit_2_before_anything_loads(tmp_path) -> None:
    """--http-port is claimed with the gRPC port, before the sandbox self-test, models and judges: the judge
    declared here (its endpoint a closed port) would warn at start-up if the judges came first."""
    config = tmp_path / "judge.yaml"
    config.write_text(
        "judges:\n  j:\n    endpoint: http://127.0.0.1:9/v1\n    model: m\n    template: x\n    choices: {A: 1}\n"
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        http_port = holder.getsockname()[1]
        done, elapsed = _start_expecting_exit(0, "--http-port", str(http_port), "--config", str(config))
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and f"cannot listen for HTTP on 127.0.0.1:{http_port}" in lines[0], lines
    assert "Address already in use" in lines[0] and elapsed < 15, (lines, elapsed)


def test_reuse_port_lets_a_second_server_share_the_port_when_asked(tmp_path) -> None:
    """--reuse-port is the opt-in to gRPC's SO_REUSEPORT: with it on both servers, the second one starts."""
    first = start_server(tmp_path, "--workers", "0", "--reuse-port")
    try:
        port = int(first.address.rsplit(":", 1)[1])
        second = start_server(tmp_path, "--workers", "0", "--reuse-port", "--port", str(port))
        try:
            assert second.address == first.address
            assert second.stub().Score(_request("xml_tag_count", n=1), timeout=30).results[0].counts.scored == 1
        finally:
            stop_server(second)
    finally:
        stop_server(first)


def test_a_second_reward_server_on_the_same_port_exits_2_instead_of_sharing_it(tmp_path) -> None:
    first = start_server(tmp_path, "--workers", "0")
    try:
        port = int(first.address.rsplit(":", 1)[1])
        done, _ = _start_expecting_exit(port)
        assert done.returncode == 2
        lines = (done.stdout + done.stderr).strip().splitlines()
        assert len(lines) == 1 and "Address already in use" in lines[0], lines
        # The first server still serves alone.
        assert first.stub().Score(_request("xml_tag_count", n=1), timeout=30).results[0].counts.scored == 1
    finally:
        stop_server(first)


SLEEPY = '''
import time

from reward_server import sample_reward


@sample_reward("sleepy")
def sleepy(completion: str) -> float:
    """Sleeps long enough for the test to kill its worker."""
    time.sleep(30)
    return 1.0
'''


def test_a_dead_worker_under_a_coalesced_trip_replaces_the_pool_once(tmp_path) -> None:
    """Every call in the broken pool hears UNAVAILABLE; the pool is replaced once (not once per call), and the
    server scores the next call on the fresh pool."""
    from concurrent.futures import ThreadPoolExecutor

    import psutil

    (tmp_path / "sleepy.py").write_text(SLEEPY)
    running = start_server(tmp_path, "--workers", "2", "--rewards-from", str(tmp_path / "sleepy.py"))
    try:
        stub = running.stub()
        request = pb.ScoreRequest(samples=[pb.Sample(completion="x")], rewards=[pb.RewardSpec(name="sleepy")])

        def call() -> grpc.StatusCode:
            try:
                stub.Score(request, timeout=60)
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()

        with ThreadPoolExecutor(6) as pool:
            calls = [pool.submit(call) for _ in range(6)]
            time.sleep(3)  # every call is in a worker's trip, sleeping
            workers = [
                p
                for p in psutil.Process(running.process.pid).children()
                if any("spawn_main" in part for part in p.cmdline())
            ]
            assert len(workers) == 2, [p.cmdline() for p in workers]
            workers[0].kill()
            codes = [c.result(timeout=60) for c in calls]
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 6
        log = running.log()
        assert log.count("a scoring worker died; restarting the pool") == 6
        assert log.count("replaced the broken scoring worker pool") == 1
        tags = stub.Score(_request("xml_tag_count", n=1), timeout=60).results[0]
        assert tags.counts.scored == 1
    finally:
        stop_server(running)
