"""Reloading plugin code without a restart, under load: SIGHUP and ``--reload-on-change``.

Callers score continuously while the file changes: no call fails, each response's scores match the code of the
catalogue version it reports, the new code's scores appear, a call running during the reload finishes on the
old code, the old workers go away, and a broken edit keeps the old code serving.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import psutil
import pytest
from conftest import start_server, stop_server
from google.protobuf import struct_pb2

from reward.v1 import reward_pb2

CODE = """
import time

def live_version(completions, pause=0.0, **kwargs):
    '''The version of this file (as the score).'''
    time.sleep(pause)
    return [{value}] * len(completions)
"""
BROKEN = "def live_version(completions, **kwargs:\n    return []\n"


def score_request(pause: float = 0.0) -> reward_pb2.ScoreRequest:
    params = struct_pb2.Struct()
    params.update({"pause": pause})
    samples = [reward_pb2.Sample(completion=f"<answer>{i}</answer>", prompt_text="q") for i in range(4)]
    return reward_pb2.ScoreRequest(
        samples=samples,
        rewards=[
            reward_pb2.RewardSpec(name="live_version", params=params),
            reward_pb2.RewardSpec(name="xml_tag_count"),
        ],
    )


class Callers:
    """Threads that call Score back to back, keeping every (catalogue version, live_version score) and error."""

    def __init__(self, stub, n: int = 2) -> None:
        self.stub, self.seen, self.errors = stub, [], []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(n)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                response = self.stub.Score(score_request(), timeout=60)
                scores = set(response.results[0].scores)
                self.seen.append((response.catalogue_version, scores.pop() if len(scores) == 1 else scores))
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                self.errors.append(exc)

    def wait_for(self, score: float, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(s == score for _, s in self.seen[-20:]):
            assert time.monotonic() < deadline, f"no score {score} after {timeout} s: {self.seen[-5:]}"
            time.sleep(0.1)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def wait_for_log(server, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{server.log()[-3000:]}"
        time.sleep(0.1)


def worker_pids(server) -> set[int]:
    """The server's worker processes (its spawned children, not multiprocessing's resource tracker); a retired
    worker that has exited but is not reaped yet (a zombie) is none of them."""
    pids = set()
    for child in psutil.Process(server.process.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                pids.add(child.pid)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return pids


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "live.py"
    path.write_text(CODE.format(value=1.0))
    return path


def test_sighup_reloads_under_load_without_failing_a_call(tmp_path, plugin) -> None:
    server = start_server(tmp_path, "--workers", "1", "--rewards-from", str(plugin))
    try:
        stub = server.stub()
        old_version = stub.ListRewards(reward_pb2.ListRewardsRequest()).catalogue_version
        old_workers = worker_pids(server)
        assert len(old_workers) == 1
        callers = Callers(stub)
        callers.wait_for(1.0)
        # A call that is running while the reload happens finishes on the old code.
        slow: list = []
        slow_call = threading.Thread(target=lambda: slow.append(stub.Score(score_request(pause=3.0), timeout=60)))
        slow_call.start()
        time.sleep(0.5)
        plugin.write_text(CODE.format(value=2.0))
        os.kill(server.process.pid, signal.SIGHUP)
        callers.wait_for(2.0)
        slow_call.join()
        info = {r.name: r for r in stub.ListRewards(reward_pb2.ListRewardsRequest()).rewards}["live_version"]
        new_version = stub.ListRewards(reward_pb2.ListRewardsRequest()).catalogue_version
        assert info.code_version == hashlib.sha256(plugin.read_bytes()).hexdigest()[:12]
        assert new_version != old_version
        assert set(slow[0].results[0].scores) == {1.0} and slow[0].catalogue_version == old_version

        # A broken edit: refused, logged, the last good code keeps serving.
        plugin.write_text(BROKEN)
        os.kill(server.process.pid, signal.SIGHUP)
        wait_for_log(server, f"reload (SIGHUP) refused, still serving catalogue {new_version}")
        count = len(callers.seen)
        while len(callers.seen) < count + 10:
            time.sleep(0.05)
        callers.join()
        assert callers.errors == []
        assert {v for v, _ in callers.seen} == {old_version, new_version}
        assert all(score == (1.0 if v == old_version else 2.0) for v, score in callers.seen)
        assert callers.seen[-1] == (new_version, 2.0)
        assert "does not import: SyntaxError" in server.log()
        # The old pool is shut down once its calls are done.
        deadline = time.monotonic() + 30
        while worker_pids(server) & old_workers:
            assert time.monotonic() < deadline, "the old workers are still running"
            time.sleep(0.2)
    finally:
        stop_server(server)


def test_reload_on_change_watches_the_files(tmp_path, plugin) -> None:
    server = start_server(tmp_path, "--workers", "0", "--reload-on-change", "--rewards-from", str(plugin))
    try:
        callers = Callers(server.stub(), n=1)
        callers.wait_for(1.0)
        plugin.write_text(CODE.format(value=3.0))
        callers.wait_for(3.0)
        plugin.write_text(BROKEN)
        wait_for_log(server, "reload (source changed) refused")
        callers.join()
        assert callers.errors == []
        assert callers.seen[-1][1] == 3.0
    finally:
        stop_server(server)
