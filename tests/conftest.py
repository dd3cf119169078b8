"""Shared fixtures: a real reward server started as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from reward.v1 import reward_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
#: The seed 002 notebook's reward list, by its function names (the rewards' aliases).
NOTEBOOK_REWARDS = [
    "xmlcount_reward_func",
    "soft_format_reward_func",
    "strict_format_reward_func",
    "int_reward_func",
    "correctness_reward_func",
]


@dataclass
class RunningServer:
    """A reward server process and how to reach it."""

    process: subprocess.Popen
    address: str
    log_path: Path

    def stub(self) -> reward_pb2_grpc.RewardServiceStub:
        return reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(self.address))

    def log(self) -> str:
        return self.log_path.read_text()

    def score_calls(self) -> int:
        """Score calls this server has answered (it logs one ``Score request_id=... samples=N`` line per call)."""
        return len(re.findall(r"Score request_id=\S+ samples=\d+", self.log()))


def start_server(
    tmp_path: Path, *args: str, config: str | None = None, timeout: float = 90.0, env: dict | None = None
) -> RunningServer:
    """Start ``python -m reward_server --port 0 ...`` and wait for its "listening on" line.

    ``config`` is YAML text for a ``--config`` file (written into ``tmp_path``).
    """
    stamp = time.monotonic_ns()
    if config is not None:
        config_path = tmp_path / f"server-{stamp}.yaml"
        config_path.write_text(config)
        args = ("--config", str(config_path), *args)
    log_path = tmp_path / f"server-{stamp}.log"
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "reward_server", "--port", "0", *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"listening on (\S+)", log_path.read_text())
        if match:
            return RunningServer(process, match.group(1), log_path)
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"server did not start in {timeout} s:\n{log_path.read_text()}")


def run_module(
    module: str, *args: str, timeout: float = 60, cwd: Path = REPO, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python -m module args`` with its output captured; the repository stays importable from any ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_server(server: RunningServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def probes_inside_calls(
    call: Callable[[], object], probe: Callable[[], bool], wanted: int = 5, max_calls: int = 20
) -> tuple[int, list]:
    """Run ``call`` again and again in a thread while ``probe`` runs here; count probes that fell inside one call.

    A single big request can finish before a probe lands on a fast machine, so the calls repeat (at most
    ``max_calls``) until ``wanted`` probes started and ended inside the same call and returned True.
    Returns that count and every call's result.
    """
    state = {"serial": 0, "in_flight": False}
    results: list = []
    enough = threading.Event()

    def caller() -> None:
        for _ in range(max_calls):
            if enough.is_set():
                return
            state["serial"] += 1
            state["in_flight"] = True
            results.append(call())
            state["in_flight"] = False

    worker = threading.Thread(target=caller)
    worker.start()
    inside = 0
    while worker.is_alive() and inside < wanted:
        before = (state["serial"], state["in_flight"])
        counts = probe()
        inside += bool(counts and before[1] and (state["serial"], state["in_flight"]) == before)
        time.sleep(0.02)
    enough.set()
    worker.join()
    return inside, results


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server with the embedded default config, shared by the live tests."""
    running = start_server(tmp_path_factory.mktemp("server"), "--workers", "2")
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def stub(server: RunningServer) -> reward_pb2_grpc.RewardServiceStub:
    return server.stub()
