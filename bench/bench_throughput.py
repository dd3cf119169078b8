"""Goal 2: completions scored per second with 1, 4 and 16 concurrent callers, for several ``--workers``.

Each caller is a thread with its own channel (as each trainer rank has), sending the seed
workload's 128-completion batch with every CPU seed reward back to back for a fixed time. The
request is serialized once per caller, so the client's own cost stays small next to the server's.
For reference, the in-process seed rewards give one trainer process ``128 / latency`` completions
per second, on one core.

Run: ``python -m bench.bench_throughput [--workers 1 2 4] [--callers 1 4 16] [--seconds 10]``
→ ``bench/results/throughput.json``.
"""

from __future__ import annotations

import os

from bench import seed_rewards
from bench.common import (
    GrpcClient,
    base_parser,
    interleaved,
    score_request,
    start_reward_server,
    summary,
    throughput,
    write_result,
)
from bench.workload import SEED_REWARDS, make_batch


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({1, 2, 4, min(8, os.cpu_count() or 1)}))
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per point")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--per-prompt", type=int, default=8)
    parser.add_argument("--size", type=int, default=1750)
    args = parser.parse_args()
    if args.quick:
        args.workers, args.callers, args.seconds, args.prompts = [1], [1, 2], 0.5, 2
    batch = make_batch(args.prompts, args.per_prompt, args.size)
    payload = score_request(batch, SEED_REWARDS).SerializeToString()
    conversational = seed_rewards.conversational(batch.completions)
    seed = summary(
        interleaved(
            {"seed": lambda: seed_rewards.score_in_process(conversational, batch.answers, batch.solutions)},
            repeats=5 if args.quick else 50,
            warmup=2,
        )["seed"]
    )
    in_process = {"latency": seed, "completions_per_s": round(len(batch) / (seed["median_ms"] / 1000), 1)}
    print(f"in-process seed rewards, one trainer process: {in_process['completions_per_s']:.0f} completions/s")
    points = []
    for workers in args.workers:
        with start_reward_server(workers) as server:
            for callers in args.callers:
                point = throughput(lambda a=server.address: GrpcClient(a), payload, len(batch), callers, args.seconds)
                point["workers"] = workers
                points.append(point)
                print(
                    f"workers {workers:2d} callers {callers:2d}: {point['completions_per_s']:9.0f} completions/s, "
                    f"p50 {point['latency']['median_ms']:.1f} ms"
                )
    write_result(
        "throughput",
        {
            "config": {
                "completions": len(batch),
                "chars_per_completion": args.size,
                "rewards": list(SEED_REWARDS),
                "seconds_per_point": args.seconds,
            },
            "in_process_seed": in_process,
            "grpc": points,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
