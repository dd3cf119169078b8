"""Load: concurrent clients for a bounded time get zero errors, and the server's memory stays flat."""

from __future__ import annotations

import statistics
import threading
import time

import psutil
from conftest import start_server, stop_server

from trainer_client import RewardClient

COMPLETION = "<reasoning>\nDer Strand ist schön und warm, die Berge sind hoch.\n</reasoning>\n<answer>\n42\n</answer>\n"
SAMPLES = [{"completion": COMPLETION * 4 + str(i), "fields": {"answer": "42"}} for i in range(64)]
REWARDS = ["xml_correctness", "xml_tag_count", "xml_strict_format", "tfidf_similarity", "format_approximate"]


def rss_mb(process: psutil.Process) -> float:
    """Resident memory of the server and its worker processes, in MiB."""
    procs = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def run_clients(address: str, clients: int, seconds: float) -> tuple[list[float], list[BaseException]]:
    latencies: list[float] = []
    errors: list[BaseException] = []
    end = time.monotonic() + seconds

    def client_loop() -> None:
        with RewardClient(address, deadline_s=60) as client:
            while time.monotonic() < end:
                start = time.perf_counter()
                try:
                    client.score(SAMPLES, REWARDS)
                    latencies.append(time.perf_counter() - start)
                except BaseException as exc:  # noqa: BLE001 - counted and asserted on
                    errors.append(exc)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    return latencies, errors


def test_concurrent_clients_zero_errors_and_flat_memory(tmp_path) -> None:
    server = start_server(tmp_path, "--workers", "2")
    try:
        process = psutil.Process(server.process.pid)
        run_clients(server.address, 8, 5)  # warm-up: caches, allocator pools
        baseline = rss_mb(process)
        latencies, errors = run_clients(server.address, 8, 20)
        grown = rss_mb(process) - baseline
        q = statistics.quantiles(latencies, n=100)
        print(
            f"\nload: 8 clients x 20 s, {len(latencies)} calls of {len(SAMPLES)} samples x {len(REWARDS)} rewards: "
            f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, "
            f"{len(latencies) * len(SAMPLES) / 20:.0f} samples/s; memory {baseline:.0f} MiB, grew {grown:+.1f} MiB"
        )
        assert not errors, f"{len(errors)} errors, first: {errors[0]!r}"
        assert len(latencies) > 50
        assert grown < 64, f"server memory grew by {grown:.1f} MiB over the run"
    finally:
        stop_server(server)
