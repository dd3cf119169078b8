"""Worker processes and math time-limit helpers end by themselves when the server dies, SIGKILL included."""

from __future__ import annotations

import time

import psutil
from conftest import REPO, start_server, stop_server


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                out.append(process)
        except psutil.NoSuchProcess:
            pass
    return out


def test_sigkill_of_the_server_leaves_no_descendant_alive(tmp_path) -> None:
    server = start_server(tmp_path, "--workers", "2", "--rewards-from", str(REPO / "examples" / "trl_rewards.py"))
    try:
        descendants = psutil.Process(server.process.pid).children(recursive=True)
        workers = [p for p in descendants if "spawn_main" in " ".join(p.cmdline())]
        # Two workers, each with its warm math time-limit helper (a child of the worker).
        assert len([p for p in workers if p.ppid() == server.process.pid]) == 2
        assert len([p for p in workers if p.ppid() != server.process.pid]) == 2
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + 10
        while alive(descendants):
            assert time.monotonic() < deadline, f"still running 10 s after SIGKILL: {alive(descendants)}"
            time.sleep(0.1)
    finally:
        for process in alive(descendants):
            process.kill()
        stop_server(server)
