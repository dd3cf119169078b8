"""Goal 5: how latency grows with the batch (32 … 2048 completions) and with completion size (0.5 … 8 KB).

For every point, three ways of scoring the same batch with every CPU seed reward run
round-robin: in-process (the seed functions, as the notebooks do), HTTP/JSON (the OpenRLHF-style
reference server of ``bench/http_server.py``) and gRPC (the real server). Growth is linear or
better when the latency per completion does not rise with the batch; the log-log slope between
neighbouring points says the same (≤ 1). Also draws ``bench/results/latency_vs_batch.png``.

Run: ``python -m bench.bench_growth`` → ``bench/results/growth.json`` and the plot.
"""

from __future__ import annotations

import math
import os
from itertools import pairwise
from pathlib import Path

from bench import seed_rewards
from bench.common import (
    RESULTS,
    GrpcClient,
    HttpClient,
    base_parser,
    interleaved,
    start_http_server,
    start_reward_server,
    summary,
    write_result,
)
from bench.workload import SEED_REWARDS, Batch, sized_batch
from reward_server.config import ServerConfig

WAYS = ("in_process", "http", "grpc")


def measure(batch: Batch, grpc: GrpcClient, http: HttpClient, budget_s: float) -> dict[str, dict]:
    """Round-robin timings of the three ways on one batch, repeated to fill about ``budget_s`` seconds."""
    conversational = seed_rewards.conversational(batch.completions)
    candidates = {
        "in_process": lambda: seed_rewards.score_in_process(conversational, batch.answers, batch.solutions),
        "http": lambda: http.score(batch, SEED_REWARDS),
        "grpc": lambda: grpc.score(batch, SEED_REWARDS),
    }
    # The repeats fit the budget: one HTTP call (the slowest way) stands for a round of the three ways.
    one_http = interleaved({"http": candidates["http"]}, repeats=1, warmup=1)["http"]
    probe = summary(one_http)["median_ms"] * 3 / 1000
    repeats = max(5, min(100, int(budget_s / max(probe, 1e-3))))
    times = interleaved(candidates, repeats=repeats, warmup=2)
    stats = {way: summary(t) for way, t in times.items()}
    return {way: {**s, "ms_per_completion": round(s["median_ms"] / len(batch), 5)} for way, s in stats.items()}


def slopes(points: list[dict], key: str) -> dict[str, list[float]]:
    """Log-log slope of the median latency between neighbouring points, per way (1 = linear)."""
    out = {}
    for way in WAYS:
        out[way] = [
            round(math.log(b[way]["median_ms"] / a[way]["median_ms"]) / math.log(b[key] / a[key]), 3)
            for a, b in pairwise(points)
        ]
    return out


def plot(points: list[dict], path: Path, workers: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    sizes = [p["completions"] for p in points]
    labels = {"in_process": "in-process (seed functions)", "http": "HTTP/JSON (FastAPI)", "grpc": "gRPC (this service)"}
    for way in WAYS:
        medians = [p[way]["median_ms"] for p in points]
        low = [p[way]["median_ms"] - p[way]["min_ms"] for p in points]
        high = [p[way]["p90_ms"] - p[way]["median_ms"] for p in points]
        axes.errorbar(sizes, medians, yerr=[low, high], marker="o", capsize=3, label=labels[way])
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(sizes, [str(s) for s in sizes])
    axes.set_xlabel("completions per Score call (~1.75 KB each)")
    axes.set_ylabel("latency, ms (median; bars: min to p90)")
    axes.set_title(f"13 CPU seed rewards: latency vs batch size ({os.cpu_count()} cores, gRPC with {workers} workers)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512, 2048])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000], help="chars per completion")
    parser.add_argument("--size-batch", type=int, default=128, help="completions per call for the size series")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timing per point")
    parser.add_argument("--workers", type=int, default=ServerConfig().workers, help="gRPC server worker processes")
    parser.add_argument("--plot", type=Path, default=RESULTS / "latency_vs_batch.png")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.sizes, args.size_batch, args.budget = [8, 16], [200, 400], 8, 0.2
    by_batch, by_size = [], []
    with start_reward_server(args.workers) as grpc_server, start_http_server() as http_server:
        grpc, http = GrpcClient(grpc_server.address), HttpClient(http_server.address)
        for n in args.batches:
            by_batch.append({"completions": n, **measure(sized_batch(n), grpc, http, args.budget)})
            print(n, "completions:", {w: by_batch[-1][w]["median_ms"] for w in WAYS})
        for size in args.sizes:
            by_size.append({"chars": size, **measure(sized_batch(args.size_batch, size), grpc, http, args.budget)})
            print(size, "chars:", {w: by_size[-1][w]["median_ms"] for w in WAYS})
        grpc.close()
        http.close()
    plot(by_batch, args.plot, args.workers)
    write_result(
        "growth",
        {
            "goal": "latency grows linearly or better (log-log slope <= 1)",
            "config": {
                "rewards": list(SEED_REWARDS),
                "grpc_workers": args.workers,
                "size_series_completions": args.size_batch,
                "seconds_per_point": args.budget,
                "plot": str(args.plot.relative_to(RESULTS.parent.parent))
                if args.plot.is_relative_to(RESULTS)
                else str(args.plot),
            },
            "by_batch": by_batch,
            "by_batch_slopes": slopes(by_batch, "completions"),
            "by_size": by_size,
            "by_size_slopes": slopes(by_size, "chars"),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
