"""Goal 3: gRPC service vs an HTTP/JSON reward server in OpenRLHF's style, same batches, same reward code.

Both servers run at once; for each number of concurrent callers, short measuring windows
alternate between them (gRPC, HTTP, gRPC, ...) so both see the same machine noise, and the
windows add up per server. The HTTP server (``bench/http_server.py``) is FastAPI + uvicorn with
one POST per batch and the rewards computed in the handler, as OpenRLHF's remote reward model
does; the gRPC server is the real one with its default worker pool.

Run: ``python -m bench.bench_http [--callers 1 4 16] [--rounds 3] [--seconds 4]`` → ``bench/results/http_vs_grpc.json``.
"""

from __future__ import annotations

from bench.common import (
    GrpcClient,
    HttpClient,
    base_parser,
    http_body,
    score_request,
    start_http_server,
    start_reward_server,
    summary,
    throughput,
    write_result,
)
from bench.workload import SEED_REWARDS, make_batch
from reward_server.config import ServerConfig


def combine(windows: list[dict]) -> dict:
    """Add up alternating measuring windows of one server and caller count."""
    calls = sum(w["calls"] for w in windows)
    wall = sum(w["wall_s"] for w in windows)
    samples = sum(w["completions_per_s"] * w["wall_s"] for w in windows)
    return {
        "calls": calls,
        "wall_s": round(wall, 3),
        "completions_per_s": round(samples / wall, 1),
        "windows_completions_per_s": [w["completions_per_s"] for w in windows],
        "median_latency_ms": summary([w["latency"]["median_ms"] / 1000 for w in windows])["median_ms"],
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3, help="alternating windows per server and caller count")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one window")
    parser.add_argument("--workers", type=int, default=ServerConfig().workers, help="gRPC server worker processes")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--per-prompt", type=int, default=8)
    parser.add_argument("--size", type=int, default=1750)
    args = parser.parse_args()
    if args.quick:
        args.callers, args.rounds, args.seconds, args.prompts = [1, 2], 1, 0.5, 2
    batch = make_batch(args.prompts, args.per_prompt, args.size)
    payloads = {"grpc": score_request(batch, SEED_REWARDS).SerializeToString(), "http": http_body(batch, SEED_REWARDS)}
    rows = []
    with start_reward_server(args.workers) as grpc_server, start_http_server() as http_server:
        grpc_client = GrpcClient(grpc_server.address)
        http_client = HttpClient(http_server.address)
        same = grpc_client.score(batch, SEED_REWARDS) == http_client.score(batch, SEED_REWARDS)
        grpc_client.close()
        http_client.close()
        if not same:
            raise AssertionError("the gRPC and HTTP servers disagree on the scores")
        clients = {"grpc": lambda: GrpcClient(grpc_server.address), "http": lambda: HttpClient(http_server.address)}
        for callers in args.callers:
            windows: dict[str, list[dict]] = {"grpc": [], "http": []}
            for _ in range(args.rounds):
                for name in windows:
                    windows[name].append(throughput(clients[name], payloads[name], len(batch), callers, args.seconds))
            row = {"callers": callers, **{name: combine(w) for name, w in windows.items()}}
            row["grpc_over_http"] = round(row["grpc"]["completions_per_s"] / row["http"]["completions_per_s"], 3)
            rows.append(row)
            print(
                f"callers {callers:2d}: grpc {row['grpc']['completions_per_s']:8.0f}/s  "
                f"http {row['http']['completions_per_s']:8.0f}/s  ratio {row['grpc_over_http']:.2f} (goal >= 2)"
            )
    write_result(
        "http_vs_grpc",
        {
            "goal": "grpc completions/s >= 2 x http completions/s",
            "config": {
                "completions": len(batch),
                "chars_per_completion": args.size,
                "rewards": list(SEED_REWARDS),
                "grpc_workers": args.workers,
                "http": "FastAPI + uvicorn, 1 process, rewards in the async handler (OpenRLHF serve_rm style)",
                "rounds": args.rounds,
                "seconds_per_window": args.seconds,
                "request_bytes": {name: len(p) for name, p in payloads.items()},
            },
            "results": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
