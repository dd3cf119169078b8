"""Goal 1: p50 latency of one Score call with every CPU seed reward vs the same rewards in-process.

The in-process baseline is the notebooks' way: the seed reward functions (``bench/seed_rewards.py``)
called one after the other in the trainer process, as TRL calls them. The remote call is timed
from the trainer's Python lists to its Python lists of scores: building the protobuf request,
the gRPC round trip over loopback, scoring on the server's warm workers, decoding the reply.
All candidates run round-robin in one process, so they share the machine's noise.

Run: ``python -m bench.bench_latency [--repeats 200] [--workers N]`` → ``bench/results/latency.json``.
"""

from __future__ import annotations

import statistics

from bench import seed_rewards
from bench.common import (
    GrpcClient,
    base_parser,
    interleaved,
    ratio_summary,
    service_scores,
    start_reward_server,
    summary,
    write_result,
)
from bench.workload import SEED_REWARDS, Batch, make_batch
from reward_server.config import ServerConfig


def service_rewards_in_process(batch: Batch) -> list[list[float]]:
    """The service's own reward code run in-process, sequentially (same semantics as the server)."""
    return list(service_scores(batch.completions, batch.fields(), SEED_REWARDS).values())


def per_seed_function(batch: Batch, repeats: int) -> dict[str, float]:
    """Median ms of each seed function alone on the batch (where the in-process time goes)."""
    completions = seed_rewards.conversational(batch.completions)
    out = {}
    for function in seed_rewards.SEED_FUNCS:
        times = interleaved(
            {
                "f": lambda f=function: f(
                    prompts=None, completions=completions, answer=batch.answers, solution=batch.solutions
                )
            },
            repeats,
            warmup=2,
        )
        out[function.__name__] = summary(times["f"])["median_ms"]
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed rounds (each runs every candidate once)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=ServerConfig().workers, help="server worker processes")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--per-prompt", type=int, default=8)
    parser.add_argument("--size", type=int, default=1750, help="characters per completion")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup, args.prompts = 5, 2, 2
    batch = make_batch(args.prompts, args.per_prompt, args.size)
    conversational = seed_rewards.conversational(batch.completions)
    with start_reward_server(args.workers) as server:
        client = GrpcClient(server.address)
        remote = client.score(batch, SEED_REWARDS)
        local = service_rewards_in_process(batch)
        if remote != local:  # the workload yields no NaN, so plain equality is the check
            raise AssertionError("the server and the in-process service rewards disagree")
        times = interleaved(
            {
                "in_process_seed": lambda: seed_rewards.score_in_process(
                    conversational, batch.answers, batch.solutions
                ),
                "in_process_service": lambda: service_rewards_in_process(batch),
                "grpc": lambda: client.score(batch, SEED_REWARDS),
            },
            args.repeats,
            args.warmup,
        )
        client.close()
    result = {name: summary(t) for name, t in times.items()}
    ratio = ratio_summary(times["grpc"], times["in_process_seed"])
    print(f"{len(batch)} completions of ~{args.size} chars, {len(SEED_REWARDS)} rewards, {args.workers} workers")
    for name, stats in result.items():
        median, low, high = stats["median_ms"], stats["min_ms"], stats["max_ms"]
        print(f"  {name:20s} median {median:7.2f} ms  min {low:7.2f}  max {high:7.2f}")
    print(f"  grpc / in_process_seed: {ratio} (goal <= 1.0)")
    write_result(
        "latency",
        {
            "goal": "grpc median <= 1.0 x in_process_seed median",
            "config": {
                "completions": len(batch),
                "prompts": args.prompts,
                "per_prompt": args.per_prompt,
                "chars_per_completion": round(statistics.fmean(map(len, batch.completions))),
                "rewards": list(SEED_REWARDS),
                "workers": args.workers,
                "repeats": args.repeats,
                "warmup": args.warmup,
            },
            "results": result,
            "grpc_vs_in_process_seed": ratio,
            "seed_function_median_ms": per_seed_function(batch, max(3, args.repeats // 10)),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
