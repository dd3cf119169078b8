"""Single-sample calls against batched calls (issue 17 §2), over gRPC and HTTP/JSON, on one real server.

Current OpenRLHF, slime, verl's reward loop and AReaL score one sample per call, many calls at once. The server
coalesces such calls, with its one batching mechanism (``batching.Collector``), into shared worker trips where
requests with the same rewards are scored as one task (``coalescing``) and, for a reward model, into shared forward
passes (``models.batcher``). This measures, side by side in alternating rounds on one server:

- ``single``: ``--samples`` concurrent callers with one sample each (all started at once);
- ``batched``: the same samples in calls of ``--batch`` (``samples / batch`` concurrent calls);

each over gRPC (``Score``) and over HTTP/JSON (OpenRLHF's ``POST /openrlhf/<profile>``, aiohttp as OpenRLHF sends
it), for two workloads: the seed notebooks' per-sample CPU rewards (``cpu``: regexes, tens of microseconds a
sample), ``math_equivalence`` (``math``: math-verify, milliseconds a sample) and a tiny random-weight reward model
(``model``, reward_server.models.synthetic, BERT-style, CPU). Throughput = samples / wall time of a round;
the figure is the median over ``--rounds``. Goals: single ≥ 0.5 × batched (cpu), ≥ 0.8 × batched (model).

Run: ``python -m bench.bench_single [--rounds 5] [--samples 256] [--batch 128]`` → ``bench/results/single.json``.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import grpc  # noqa: E402

from bench.common import GRPC_OPTIONS, base_parser, running, write_result  # noqa: E402
from bench.workload import SEED_REWARDS, make_batch  # noqa: E402
from reward.v1 import reward_pb2 as pb  # noqa: E402
from reward.v1 import reward_pb2_grpc  # noqa: E402

#: The seed rewards that score each sample alone (tf-idf scores a group together: one sample alone is other work)
#: and read no field but the label (OpenRLHF sends one label per sample; solution_levenshtein reads a second field).
CPU_REWARDS = tuple(r for r in SEED_REWARDS if r not in ("tfidf_similarity", "solution_levenshtein"))
#: A CPU reward that costs milliseconds per sample (math-verify in its time-limited helper), where a call's fixed
#: cost matters less than for the seed rewards' regexes.
MATH_REWARDS = ("math_equivalence",)
WORKLOADS = {"cpu": CPU_REWARDS, "math": MATH_REWARDS, "model": ("tiny_rm",)}
GOALS = {"cpu": 0.5, "math": 0.5, "model": 0.8}


def config_text(rewards: dict[str, list[str]], http_port: int = 0) -> str:
    lines = [f"http_port: {http_port}", "profiles:"]
    for profile, names in rewards.items():
        lines += [f"  {profile}:", f"    rewards: [{', '.join('{name: ' + n + '}' for n in names)}]"]
    return "\n".join(lines) + "\n"


async def grpc_round(address: str, requests: list[pb.ScoreRequest]) -> list[float]:
    async with grpc.aio.insecure_channel(address, options=GRPC_OPTIONS) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        replies = await asyncio.gather(*(stub.Score(r, timeout=600) for r in requests))
    return [t for reply in replies for t in reply.total]


async def http_round(url: str, payloads: list[dict]) -> list[float]:
    connector = aiohttp.TCPConnector(limit=len(payloads))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def post(payload: dict) -> list[float]:
            async with session.post(url, json=payload) as response:
                response.raise_for_status()
                return (await response.json())["rewards"]

        replies = await asyncio.gather(*(post(p) for p in payloads))
    return [t for reply in replies for t in reply]


def make_modes(address: str, requests: dict, url: str, payloads: dict) -> dict[str, Callable[[], Awaitable]]:
    """The four ways to score the same samples: {grpc, http} x {single, batched}."""
    return {
        "grpc_single": lambda: grpc_round(address, requests["single"]),
        "grpc_batched": lambda: grpc_round(address, requests["batched"]),
        "http_single": lambda: http_round(url, payloads["single"]),
        "http_batched": lambda: http_round(url, payloads["batched"]),
    }


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=1000, help="characters per completion")
    parser.add_argument("--device", default="cpu", help="the reward model's device: cpu, cuda or cuda:N")
    parser.add_argument(
        "--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS), help="default: all three"
    )
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    if args.quick:
        args.rounds, args.samples, args.batch = 1, 16, 8
    batch = make_batch(args.samples // 8, 8, args.size)
    completions = batch.completions
    prompts = [
        f"<|im_start|>user\nQuestion {i // 8}<|im_end|>\n<|im_start|>assistant\n" for i in range(len(completions))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        from reward_server.models.synthetic import BERT_BASE, build_reward_model

        # On a GPU the model is bert-base sized (110 M parameters, bf16), where a forward pass costs what it costs
        # in training; on the CPU a tiny one, so that the call's own cost shows.
        shape = BERT_BASE if gpu else {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 128}
        model_dir = build_reward_model(Path(tmp) / "rm", "bert", dtype="bfloat16" if gpu else "float32", **shape)
        config = Path(tmp) / "server.yaml"
        config.write_text(config_text({name: list(rewards) for name, rewards in WORKLOADS.items()}))
        command = [sys.executable, "-m", "reward_server", "--port", "0", "--workers", str(args.workers)]
        command += ["--log-level", "WARNING", "--config", str(config), "--reward-model", f"tiny_rm={model_dir}"]
        command += ["--device", args.device]
        with running(command, pattern=r"HTTP/JSON on (\S+)") as http_server:
            http_base = http_server.address
            address = None
            deadline = time.monotonic() + 60
            while address is None and time.monotonic() < deadline:  # printed right after the HTTP line
                found = re.search(r"listening on (\S+)", http_server.log.read_text())
                address = found.group(1) if found else None
                time.sleep(0.05)
            results = {}
            for workload, rewards in ((w, WORKLOADS[w]) for w in args.workloads):
                specs = [pb.RewardSpec(name=r) for r in rewards]
                fields = batch.fields()
                completions = batch.completions
                if workload == "math":  # numeric references and a final box math-verify reads (right for even i)
                    fields = [{**f, "answer": str(7 * (i // 8))} for i, f in enumerate(fields)]
                    completions = [f"{c}\n\\boxed{{{7 * (i // 8) + i % 2}}}" for i, c in enumerate(completions)]
                samples = [
                    pb.Sample(completion=c, prompt_text=p, fields=f)
                    for c, p, f in zip(completions, prompts, fields, strict=True)
                ]
                requests = {
                    "single": [pb.ScoreRequest(samples=[s], rewards=specs) for s in samples],
                    "batched": [pb.ScoreRequest(samples=c, rewards=specs) for c in chunks(samples, args.batch)],
                }
                rows = [
                    {"query": [p + c + "<|im_end|>"], "prompts": [p], "labels": [f["answer"]]}
                    for c, p, f in zip(completions, prompts, fields, strict=True)
                ]
                payloads = {
                    "single": rows,
                    "batched": [
                        {k: [v for r in part for v in r[k]] for k in ("query", "prompts", "labels")}
                        for part in chunks(rows, args.batch)
                    ],
                }
                modes = make_modes(address, requests, f"{http_base}/openrlhf/{workload}", payloads)
                reference = asyncio.run(modes["grpc_batched"]())  # warm-up, and the totals every mode must give
                for name, mode in modes.items():
                    totals = asyncio.run(mode())
                    # A model's logits move in the last float32 bits with the padding of the batch a text lands in.
                    # bf16 on a GPU keeps about three digits, and its kernels change with the batch's shape.
                    tolerance = (2e-2 if gpu else 1e-5) if workload == "model" else 0.0
                    pairs = enumerate(zip(totals, reference, strict=True))
                    differ = [
                        (i, a, b) for i, (a, b) in pairs if not math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
                    ]
                    if differ:
                        raise AssertionError(f"{workload}/{name} disagrees with gRPC batched totals: {differ[:5]}")
                rates: dict[str, list[float]] = {name: [] for name in modes}
                for r in range(args.rounds):
                    names = list(modes)
                    for name in names[r % len(names) :] + names[: r % len(names)]:
                        start = time.perf_counter()
                        asyncio.run(modes[name]())
                        rates[name].append(len(completions) / (time.perf_counter() - start))
                median = {name: round(statistics.median(v), 1) for name, v in rates.items()}
                results[workload] = {
                    "samples_per_s": median,
                    "rounds_samples_per_s": {n: [round(x, 1) for x in v] for n, v in rates.items()},
                    "single_over_batched": {
                        t: round(median[f"{t}_single"] / median[f"{t}_batched"], 3) for t in ("grpc", "http")
                    },
                    "http_over_grpc": {
                        s: round(median[f"http_{s}"] / median[f"grpc_{s}"], 3) for s in ("single", "batched")
                    },
                    "goal_single_over_batched": GOALS[workload],
                }
                print(workload, results[workload]["samples_per_s"], results[workload]["single_over_batched"])
    write_result(
        "single",
        {
            "goal": "single-sample calls >= 0.5x batched throughput (CPU rewards), >= 0.8x (reward model)",
            "config": {
                "samples": len(completions),
                "batch": args.batch,
                "chars_per_completion": args.size,
                "workers": args.workers,
                "rounds": args.rounds,
                "cpu_rewards": list(CPU_REWARDS),
                "math_rewards": list(MATH_REWARDS),
                "model": "tiny_rm: random-weight BERT classifier, bert-base shapes (110 M), bf16, " + args.device
                if gpu
                else "tiny_rm: random-weight BERT-style classifier (hidden 64, 2 layers), CPU",
                "workloads": args.workloads,
                "http": "POST /openrlhf/<profile>, aiohttp (as OpenRLHF sends it)",
            },
            "results": results,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
