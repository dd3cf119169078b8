"""What the code sandbox costs: the same 10-test Python problems run unsandboxed and sandboxed, side by side.

The problems are the shipped set (``reward_server/code/problems.jsonl``): every Python problem with stdin tests, its
reference solution, its test inputs cycled to 10 tests. Each completion is one ``Engine.run`` (one harness, a fresh
child per test), on :class:`UnsafeLocalEngine` (no sandbox: the harness as a plain child process) and on
:class:`LocalEngine` (bwrap + seccomp + unprivileged uid), interleaved so both share the machine's noise:

- latency per completion (p50, p95) and the ratio sandboxed / unsandboxed;
- throughput: completions per second with one caller thread per core, back to back (5 alternating windows each);
- the sandbox's own cost: an empty program with one test, on each engine (their difference is what the sandbox adds
  to every completion), and a bare ``bwrap /bin/true``;
- the served path: ``code_pass_rate`` on the same completions through a real server (one worker per core, Score
  calls of 16 samples from 2 callers), output comparison and gRPC included.

Run: ``python -m bench.bench_code [--repeats 60] [--seconds 10]`` → ``bench/results/code.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import REPO, base_parser, interleaved, start_reward_server, write_result
from reward_server.code.execution import Engine, RunLimits, TestInput, Verdict
from reward_server.code.sandbox import LocalEngine, UnsafeLocalEngine
from reward_server.code.sandbox.bwrap import find_bwrap

TESTS_PER_PROBLEM = 10
LIMITS = RunLimits(time_limit_s=5.0, memory_mb=512)


def problems() -> list[tuple[str, str, list[TestInput]]]:
    """(id, reference solution, 10 stdin tests) for every shipped Python problem with stdin tests."""
    out = []
    for line in (REPO / "reward_server" / "code" / "problems.jsonl").read_text().splitlines():
        problem = json.loads(line)
        info = problem["verification_info"]
        cases = info["test_cases"]
        if info["language"] != "python" or any(c["type"] != "stdin_stdout" for c in cases):
            continue
        tests = [TestInput(stdin=cases[i % len(cases)]["input"]) for i in range(TESTS_PER_PROBLEM)]
        out.append((problem["id"], problem["reference"], tests))
    return out


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def runner(engine: Engine, jobs: list[tuple[str, str, list[TestInput]]]) -> Callable[[], None]:
    """One completion per call, cycling through the problems; every run must pass (else the figures mean nothing)."""
    state = {"next": 0}

    def run() -> None:
        name, source, tests = jobs[state["next"] % len(jobs)]
        state["next"] += 1
        runs = engine.run("python", source, tests, LIMITS)
        bad = [r for r in runs if r.verdict != Verdict.OK]
        if bad:
            raise RuntimeError(f"{engine.name}: {name}: {bad[0].verdict} {bad[0].stderr_tail}")

    return run


def throughput(engine: Engine, jobs: list[tuple[str, str, list[TestInput]]], callers: int, seconds: float) -> dict:
    """Completions per second with ``callers`` threads calling ``engine.run`` back to back for ``seconds``."""
    done = [0] * callers
    stop_at = time.perf_counter() + seconds

    def call(i: int) -> None:
        run = runner(engine, jobs[i:] + jobs[:i])
        while time.perf_counter() < stop_at:
            run()
            done[i] += 1

    begin = time.perf_counter()
    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begin
    return {"callers": callers, "completions": sum(done), "completions_per_s": round(sum(done) / wall, 1)}


def interleaved_throughput(
    engines: dict[str, Engine], jobs: list[tuple[str, str, list[TestInput]]], callers: int, seconds: float
) -> dict[str, dict]:
    """:func:`throughput` of each engine in 5 alternating windows (order rotating), so both share the noise."""
    totals = {name: {"callers": callers, "completions": 0, "wall_s": 0.0} for name in engines}
    names = list(engines)
    for r in range(5):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            begin = time.perf_counter()
            totals[name]["completions"] += throughput(engines[name], jobs, callers, seconds / 5)["completions"]
            totals[name]["wall_s"] += time.perf_counter() - begin
    for total in totals.values():
        total["completions_per_s"] = round(total["completions"] / total["wall_s"], 1)
        total["wall_s"] = round(total["wall_s"], 2)
    return totals


def served(workers: int, callers: int, seconds: float, batch: int = 16) -> dict[str, Any]:
    """``code_pass_rate`` through a real server (sandboxed): Score calls of ``batch`` 10-test completions, each
    sample's expected outputs in its ``verification_info``; completions per second with ``callers`` back to back."""
    from trainer_client.client import RewardClient

    samples = []
    for line in (REPO / "reward_server" / "code" / "problems.jsonl").read_text().splitlines():
        problem = json.loads(line)
        info = problem["verification_info"]
        cases = info["test_cases"]
        if info["language"] == "python" and all(c["type"] == "stdin_stdout" for c in cases):
            tests = [cases[i % len(cases)] for i in range(TESTS_PER_PROBLEM)]
            completion = f"```python\n{problem['reference']}```"
            samples.append({"completion": completion, "fields": {"verification_info": {**info, "test_cases": tests}}})
    requests = [(samples * batch)[i : i + batch] for i in range(0, len(samples) * batch, batch)]
    done, scores = [0] * callers, []
    with start_reward_server(workers) as server:
        clients = [RewardClient(server.address, deadline_s=600) for _ in range(callers)]
        clients[0].score(requests[0], ["code_pass_rate"])  # warm: first sandbox of each worker
        stop_at = time.perf_counter() + seconds

        def call(i: int) -> None:
            k = i
            while time.perf_counter() < stop_at:
                result = clients[i].score(requests[k % len(requests)], ["code_pass_rate"])
                scores.extend(result.rewards[0].scores)
                done[i] += batch
                k += callers

        begin = time.perf_counter()
        threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - begin
        for client in clients:
            client.close()
    if any(score != 1.0 for score in scores):
        raise RuntimeError("a reference solution did not score 1.0 through the server")
    return {
        "workers": workers,
        "callers": callers,
        "samples_per_call": batch,
        "completions": sum(done),
        "completions_per_s": round(sum(done) / wall, 1),
    }


def bare_bwrap(repeats: int) -> dict[str, float]:
    """``bwrap --unshare-all ... /bin/true`` as the sandbox uid would start it: bwrap's own start-up."""
    bwrap = str(find_bwrap())
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib"]
    cmd += ["--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin", "--proc", "/proc", "/bin/true"]
    user = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, **user)
        times.append(time.perf_counter() - start)
    return percentiles(times)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60, help="completions timed per engine (interleaved)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--callers", type=int, default=os.cpu_count() or 1, help="threads in the throughput runs")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds = 6, 1.0
    jobs = problems()
    engines: dict[str, Engine] = {"unsandboxed": UnsafeLocalEngine(), "sandboxed": LocalEngine()}
    latency = interleaved({name: runner(e, jobs) for name, e in engines.items()}, args.repeats, warmup=2)
    empty = [("empty", "pass\n", [TestInput()])]
    start_cost = interleaved({name: runner(e, empty) for name, e in engines.items()}, args.repeats, warmup=2)
    rates = interleaved_throughput(engines, jobs, args.callers, args.seconds)
    per_completion = {name: percentiles(times) for name, times in latency.items()}
    empty_stats = {name: percentiles(times) for name, times in start_cost.items()}
    payload: dict[str, Any] = {
        "problems": [name for name, _, _ in jobs],
        "tests_per_completion": TESTS_PER_PROBLEM,
        "per_completion": per_completion,
        "sandboxed_over_unsandboxed": round(
            per_completion["sandboxed"]["p50_ms"] / per_completion["unsandboxed"]["p50_ms"], 3
        ),
        "throughput": rates,
        "empty_program": empty_stats,
        "sandbox_cost_ms": round(empty_stats["sandboxed"]["p50_ms"] - empty_stats["unsandboxed"]["p50_ms"], 2),
        "bare_bwrap": bare_bwrap(args.repeats),
        "served": served(os.cpu_count() or 1, 2, args.seconds),
    }
    write_result("code", payload, args.out)
    shown = ("per_completion", "sandboxed_over_unsandboxed", "throughput", "served")
    print(json.dumps({k: payload[k] for k in shown}, indent=1))


if __name__ == "__main__":
    main()
