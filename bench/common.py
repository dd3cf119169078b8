"""Shared pieces of the benchmarks: servers as subprocesses, clients, timing statistics, JSON results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.workload import Batch
from reward.v1 import reward_pb2 as pb

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SCORE_METHOD = "/reward.v1.RewardService/Score"
GRPC_OPTIONS = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]


# ---------------------------------------------------------------- statistics


def summary(seconds: Sequence[float]) -> dict[str, float]:
    """Median, min, max, p90 and mean of timings given in seconds, reported in milliseconds.

    Example:
        >>> summary([0.001, 0.003, 0.002])
        {'n': 3, 'median_ms': 2.0, 'min_ms': 1.0, 'max_ms': 3.0, 'p90_ms': 3.0, 'mean_ms': 2.0}
    """
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 4),
        "min_ms": round(ms[0], 4),
        "max_ms": round(ms[-1], 4),
        "p90_ms": round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 4),
        "mean_ms": round(statistics.fmean(ms), 4),
    }


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Time every candidate ``repeats`` times, round-robin, so that they share the machine's noise.

    The order rotates each round, so no candidate always runs right after another one.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_summary(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float]:
    """Median of the per-round ratios and the ratio of the medians (both reported: noise shows as a gap)."""
    rounds = [a / b for a, b in zip(numerator, denominator, strict=True) if b > 0]
    return {
        "ratio_of_medians": round(statistics.median(numerator) / statistics.median(denominator), 4),
        "median_of_ratios": round(statistics.median(rounds), 4),
    }


# ---------------------------------------------------------------- machine and results


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, load, Python and library versions, commit."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    import google.protobuf

    info = {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
    }
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        info["commit"] = commit.stdout.strip()
    except OSError:  # no git on the machine
        pass
    return info


def write_result(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``bench/results/<name>.json`` (or ``out``) with the machine description added."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny configuration (smoke test): seconds, not minutes")
    parser.add_argument("--out", type=Path, help="JSON result path (default bench/results/<name>.json)")
    return parser


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    """A server subprocess and the address it printed."""

    process: subprocess.Popen
    address: str
    log: Path


@contextmanager
def running(command: Sequence[str], pattern: str = r"listening on (\S+)", timeout: float = 120.0) -> Iterator[Server]:
    """Start ``command`` in the repository root, wait for the address line, stop it on exit."""
    log = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, log.read_text())
            if match:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {command} did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield Server(process, match.group(1), log)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)


def start_reward_server(workers: int, *extra: str, timeout: float = 120.0) -> AbstractContextManager[Server]:
    """The real reward server (``python -m reward_server``) on a free loopback port.

    ``extra`` comes last, so it may override the defaults here (``--log-level DEBUG``: argparse keeps the last).
    """
    command = [sys.executable, "-m", "reward_server", "--port", "0", "--workers", str(workers)]
    return running([*command, "--log-level", "WARNING", *extra], timeout=timeout)


def start_http_server() -> AbstractContextManager[Server]:
    """The FastAPI + uvicorn reference server of ``bench/http_server.py`` on a free loopback port."""
    return running([sys.executable, "-m", "bench.http_server", "--port", "0"])


# ---------------------------------------------------------------- clients


def service_scores(
    completions: list[str], fields: list[dict[str, str]], rewards: Sequence[str]
) -> dict[str, list[float]]:
    """The service's own reward code run in-process: each reward over the batch, one after the other, defaults."""
    # Imported here: the catalogue loads every reward module (numpy...), which scripts that only call servers skip.
    import reward_server.rewards  # noqa: F401 - registers the catalogue
    from reward_server.registry import REGISTRY, Batch

    scores = {}
    for name in rewards:
        reward = REGISTRY.get(name)
        params = reward.defaults()
        scores[name] = reward.score_batch(Batch(completions, reward.columns(params, fields)), **params).scores
    return scores


def score_request(batch: Batch, rewards: Sequence[str]) -> pb.ScoreRequest:
    """The Score request a trainer sends for one batch (completions plus the dataset columns)."""
    return pb.ScoreRequest(
        samples=[pb.Sample(completion=c, fields=f) for c, f in zip(batch.completions, batch.fields(), strict=True)],
        rewards=[pb.RewardSpec(name=name) for name in rewards],
    )


class GrpcClient:
    """A trainer-side caller: Python lists in, per-reward score lists out, over one channel."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        # Bytes in, bytes out: throughput runs send a request serialized once.
        self.raw = self.channel.unary_unary(SCORE_METHOD)

    def score(self, batch: Batch, rewards: Sequence[str]) -> list[list[float]]:
        """Build the request from the batch, call Score, return the scores (the whole trip a trainer pays)."""
        reply = pb.ScoreResponse.FromString(self.raw(score_request(batch, rewards).SerializeToString()))
        return [list(result.scores) for result in reply.results]

    def score_bytes(self, request: bytes) -> int:
        """Send a serialized request; returns the number of totals in the reply."""
        return len(pb.ScoreResponse.FromString(self.raw(request)).total)

    def close(self) -> None:
        self.channel.close()


def http_body(batch: Batch, rewards: Sequence[str]) -> bytes:
    """The JSON body of one POST to the reference HTTP server (OpenRLHF's ``query`` plus the columns)."""
    return json.dumps({"query": batch.completions, "fields": batch.fields(), "rewards": list(rewards)}).encode()


class HttpClient:
    """One keep-alive HTTP/1.1 connection to the reference server."""

    def __init__(self, address: str) -> None:
        import http.client

        host, port = address.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=600)

    def post(self, body: bytes) -> dict[str, Any]:
        self.connection.request("POST", "/get_reward", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:500]!r}")
        return json.loads(data)

    def score(self, batch: Batch, rewards: Sequence[str]) -> list[list[float]]:
        reply = self.post(http_body(batch, rewards))
        return [reply["scores"][name] for name in rewards]

    def score_bytes(self, body: bytes) -> int:
        return len(self.post(body)["rewards"])

    def close(self) -> None:
        self.connection.close()


def throughput(
    make_client: Callable[[], Any], payload: bytes, samples: int, callers: int, seconds: float, warmup: int = 2
) -> dict[str, float]:
    """Completions scored per second by ``callers`` threads sending ``payload`` back to back for ``seconds``."""
    clients = [make_client() for _ in range(callers)]
    for client in clients:
        for _ in range(warmup):
            client.score_bytes(payload)
    latencies: list[list[float]] = [[] for _ in clients]
    start_line = threading.Barrier(callers + 1)
    stop_at = 0.0

    def call(index: int) -> None:
        start_line.wait()
        while time.perf_counter() < stop_at:
            begin = time.perf_counter()
            clients[index].score_bytes(payload)
            latencies[index].append(time.perf_counter() - begin)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    begin = time.perf_counter()
    stop_at = begin + seconds
    start_line.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    for client in clients:
        client.close()
    calls = sum(map(len, latencies))
    return {
        "callers": callers,
        "calls": calls,
        "wall_s": round(wall, 3),
        "completions_per_s": round(calls * samples / wall, 1),
        "latency": summary([t for per in latencies for t in per]),
    }
