"""sentiment_match: the server's cross-request batching against the seed's way, on CPU or a GPU.

The model is a random-weight BERT of the real architecture (bert-base: 12 layers, 768 hidden,
12 heads, 30k vocabulary, 3 labels), so it costs what oliverguhr/german-sentiment-bert costs
without a download; its WordPiece tokenizer is trained here so that German-like text takes
about 1.3 tokens per word, as the real tokenizer does.

Workload: GRPO-sized requests (``--completions`` completions per request, 8 per prompt, each
prompt with its own reference answer) sent by ``--callers`` concurrent callers.

- seed: the notebook's way, ``pipeline(list_of_completions)`` (one text at a time, fp32) plus the
  batch's first reference, per request, all requests one after another on the same device.
- server: the real reward server (``--enable-sentiment``) answering the concurrent callers.
- raw (GPU, and CPU with ``--raw``): the same model's plain batched forward pass over the same
  texts (batches of 128, pre-tokenized, same precision as the server): the ceiling the server's
  throughput is measured against.
- fixed (GPU): sequences/s of texts of 128 and of 512 tokens, raw and through the server, and
  p50/p99 of one 128-completion request alone.

Run: ``python bench/bench_sentiment.py`` (CPU, a few minutes on 2 cores: shorter and fewer texts
than GRPO's, see the defaults) or ``python bench/bench_sentiment.py --device cuda`` (GRPO-sized).
Writes ``bench/results/sentiment_<cpu|gpu>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package

import grpc  # noqa: E402 - after the path fix above

from bench.common import GRPC_OPTIONS, RESULTS, Server, start_reward_server  # noqa: E402
from bench.common import machine as common_machine  # noqa: E402
from reward.v1 import reward_pb2 as pb  # noqa: E402
from reward_server.models.synthetic import build_sentiment_classifier, german_text  # noqa: E402

PER_PROMPT = 8  # completions per prompt in a GRPO group
BERT_BASE = {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 3072, "vocab_size": 30000}
BERT_BASE |= {"initializer_range": 0.02}  # BERT's own: keeps fp16 activations in range like trained weights
QUICK_MODEL = {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "initializer_range": 0.02}
TOKENIZER_VOCAB = 420  # gives about 1.3 tokens per word on german_text (the real tokenizer: 1.3 to 1.5)


Request = tuple[list[str], list[str]]  # completions, their references


def make_requests(
    seed: int, count: int, completions: int, words: tuple[int, int], same_references: bool = False
) -> list[Request]:
    """``count`` requests of ``completions`` completions, 8 per prompt, each prompt with its reference.

    ``same_references``: every request reuses the first request's references, so once cached
    the server classifies only completions (for the fixed-length figures).
    """
    rng = random.Random(seed)
    requests: list[Request] = []
    for _ in range(count):
        refs = [german_text(rng, rng.randint(20, 60)) for _ in range(max(1, completions // PER_PROMPT))]
        if same_references and requests:
            refs = list(dict.fromkeys(requests[0][1]))
        texts = [german_text(rng, rng.randint(*words)) for _ in range(completions)]
        requests.append((texts, [refs[i * len(refs) // completions] for i in range(completions)]))
    return requests


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# ---------------------------------------------------------------- the three ways


def seed_way(model_dir: Path, device: str, requests: list[Request]) -> dict[str, float]:
    """The notebook: a pipeline on the trainer's device, one request after another."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model_dir), device=device)
    pipe(requests[0][0][:2], truncation=True)  # warm-up
    latencies = []
    start = time.perf_counter()
    for completions, references in requests:
        t = time.perf_counter()
        labels = [d["label"] for d in pipe(completions, truncation=True)]
        reference = pipe(references[0], truncation=True)[0]["label"]  # answer[0] for the whole batch
        _ = [float(label == reference) for label in labels]
        latencies.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    del pipe
    return _figures(sum(len(r[0]) for r in requests), total, latencies)


def raw_forward(model_dir: Path, device: str, batches: list[list[str]]) -> dict[str, float]:
    """The model's plain batched forward pass over pre-tokenized batches, results copied back."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = _load_model(model_dir, device)
    encoded = [tokenizer(b, padding=True, truncation=True, max_length=512, return_tensors="pt") for b in batches]
    with torch.inference_mode():
        model(**encoded[0].to(device))  # warm-up
        _sync(device)
        start = time.perf_counter()
        for batch in encoded:
            model(**batch.to(device)).logits.float().softmax(-1).cpu()
        _sync(device)
    return _figures(sum(len(b) for b in batches), time.perf_counter() - start, [])


def raw_fixed_length(model_dir: Path, device: str, length: int, batch: int, repeats: int) -> float:
    """Sequences/s of the raw forward pass on random token ids of exactly ``length`` tokens."""
    import torch

    model = _load_model(model_dir, device)
    ids = torch.randint(5, 400, (batch, length), device=device)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(input_ids=ids, attention_mask=mask).logits.float().cpu()
        _sync(device)
    return batch * repeats / (time.perf_counter() - start)


def _load_model(model_dir: Path, device: str) -> Any:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    return (model.half() if device.startswith("cuda") else model).to(device).eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _figures(sequences: int, total_s: float, latencies: list[float]) -> dict[str, float]:
    out = {"sequences": sequences, "seconds": round(total_s, 3), "sequences_per_s": round(sequences / total_s, 2)}
    if latencies:
        out |= {
            "requests": len(latencies),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        }
    return out


# ---------------------------------------------------------------- the server


def reward_server(model_dir: Path, device: str, config: Path | None = None) -> AbstractContextManager[Server]:
    """The real server with the sentiment model, on a free loopback port, logging each batch it forms (DEBUG)."""
    extra = ["--log-level", "DEBUG", "--enable-sentiment", "--sentiment-model", str(model_dir), "--device", device]
    extra += ["--config", str(config)] if config else []
    return start_reward_server(1, *extra, timeout=600)


def server_way(address: str, log: Path, callers: int, requests: list[Request]) -> dict[str, Any]:
    """``callers`` concurrent callers (one channel each) share ``requests``; wall time and latencies."""
    stubs = [pb_stub(grpc.insecure_channel(address, options=GRPC_OPTIONS)) for _ in range(callers)]
    messages = [_request(c, r) for c, r in requests]
    stubs[0].Score(messages[0], timeout=600)  # warm-up (not counted)
    offset = len(log.read_text())
    latencies: list[float] = []
    lock = threading.Lock()

    def caller(index: int) -> None:
        for message in messages[index::callers]:
            t = time.perf_counter()
            stubs[index].Score(message, timeout=600)
            with lock:
                latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.perf_counter() - start
    return _figures(sum(len(c) for c, _ in requests), total, latencies) | _batches(log.read_text()[offset:])


def agreement(address: str, model_dir: Path, device: str, request: Request) -> dict[str, float]:
    """Soft scores of the server against the seed pipeline's probabilities (fp32) on one request."""
    from google.protobuf import struct_pb2
    from transformers import pipeline

    completions, references = request
    soft = struct_pb2.Struct()
    soft.update({"soft": True})
    message = _request(completions, references)
    message.rewards[0].params.CopyFrom(soft)
    served = list(pb_stub(grpc.insecure_channel(address)).Score(message, timeout=600).results[0].scores)
    pipe = pipeline("text-classification", model=str(model_dir), device=device)
    outputs = pipe(completions + references, truncation=True, top_k=None)
    probs = [{d["label"]: d["score"] for d in out} for out in outputs]
    completion_probs, reference_probs = probs[: len(completions)], probs[len(completions) :]
    expected = [c[max(r, key=r.__getitem__)] for c, r in zip(completion_probs, reference_probs, strict=True)]
    return {
        "samples": len(served),
        "max_abs_diff": max(abs(a - b) for a, b in zip(served, expected, strict=True)),
        "mean_abs_diff": statistics.fmean(abs(a - b) for a, b in zip(served, expected, strict=True)),
    }


def pb_stub(channel: grpc.Channel) -> Any:
    from reward.v1 import reward_pb2_grpc

    return reward_pb2_grpc.RewardServiceStub(channel)


def _request(completions: list[str], references: list[str]) -> pb.ScoreRequest:
    samples = [pb.Sample(completion=c, fields={"answer": r}) for c, r in zip(completions, references, strict=True)]
    return pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="sentiment_match")])


def _batches(log: str) -> dict[str, float]:
    """Batch sizes the server formed during the run, from its debug log."""
    sizes = [int(n) for n in re.findall(r"batch size=(\d+) requests=\d+", log)]
    shared = len(re.findall(r"batch size=\d+ requests=([2-9]|\d\d+)", log))
    if not sizes:
        return {}
    return {"batches": len(sizes), "mean_batch_size": round(statistics.fmean(sizes), 1), "shared_batches": shared}


# ---------------------------------------------------------------- driver


def token_stats(model_dir: Path, requests: list[Request]) -> dict[str, float]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [t for completions, _ in requests for t in completions]
    words = sum(len(t.split()) for t in texts)
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    return {
        "mean_words": round(words / len(texts), 1),
        "mean_tokens": round(statistics.fmean(min(n, 512) for n in lengths), 1),
        "tokens_per_word": round(sum(lengths) / words, 3),
        "truncated_fraction": round(sum(n > 512 for n in lengths) / len(lengths), 3),
    }


def interleave(rounds: int, ways: dict[str, Callable[[], dict]]) -> dict[str, list[dict]]:
    """Run every way ``rounds`` times, alternating, so they share the machine's noise."""
    results: dict[str, list[dict]] = {name: [] for name in ways}
    for r in range(rounds):
        names = list(ways)[r % len(ways) :] + list(ways)[: r % len(ways)]
        for name in names:
            results[name].append(ways[name]())
            print(f"  round {r + 1} {name}: {results[name][-1]}", flush=True)
    return results


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 2)


def machine(device: str) -> dict[str, Any]:
    """``bench.common.machine`` plus the torch side: versions and the GPU's name."""
    import torch
    import transformers

    info = common_machine() | {"torch": torch.__version__, "transformers": transformers.__version__}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--callers", type=int, help="concurrent callers (default 2 on CPU, 4 on a GPU)")
    parser.add_argument("--requests", type=int, help="requests in all (default 4 on CPU, 32 on a GPU)")
    parser.add_argument("--completions", type=int, help="completions per request (default 16 on CPU, 128 on a GPU)")
    parser.add_argument("--words", type=int, nargs=2, help="words per completion (default 60 100 on CPU, 200 400)")
    parser.add_argument("--seed-requests", type=int, help="requests timed the seed's way (default all, 8 on a GPU)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of seed and server")
    parser.add_argument("--raw", action="store_true", help="also time the raw forward pass on CPU")
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/sentiment_<cpu|gpu>.json)")
    parser.add_argument("--server-log", type=Path, help="keep a copy of the server's debug log here")
    parser.add_argument("--server-config", type=Path, help="YAML settings for the server (e.g. model_* batching)")
    parser.add_argument("--model-dir", type=Path, help="build the model here, or reuse the one already there")
    parser.add_argument("--skip-seed", action="store_true", help="time only the server (and raw) ways")
    parser.add_argument("--quick", action="store_true", help="smoke test: a tiny model and workload, seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.completions, args.requests, args.words, args.rounds = (
            args.completions or 4,
            args.requests or 2,
            [10, 20],
            1,
        )
    gpu = args.device.startswith("cuda")
    callers = args.callers or (4 if gpu else 2)
    n_requests = args.requests or (32 if gpu else 4)
    completions = args.completions or (128 if gpu else 16)
    words = tuple(args.words or ((200, 400) if gpu else (60, 100)))
    requests = make_requests(0, n_requests, completions, words)
    seed_requests = requests[: args.seed_requests or (8 if gpu else n_requests)]
    out = args.out or RESULTS / f"sentiment_{'gpu' if gpu else 'cpu'}.json"

    with tempfile.TemporaryDirectory(prefix="bench-sentiment-") as tmp:
        model_dir = args.model_dir or Path(tmp) / "bert-base"
        if not (model_dir / "config.json").exists():
            start = time.perf_counter()
            size = QUICK_MODEL if args.quick else BERT_BASE
            build_sentiment_classifier(model_dir, tokenizer_vocab=TOKENIZER_VOCAB, **size)
            print(f"built a random-weight model in {time.perf_counter() - start:.1f} s", flush=True)
        result: dict[str, Any] = {
            "benchmark": "sentiment",
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(args.device),
            "config": {
                "quick": args.quick,
                "device": args.device,
                "callers": callers,
                "requests": n_requests,
                "completions": completions,
            }
            | {"words": list(words), "seed_requests": len(seed_requests), "rounds": args.rounds}
            | {"server_config": args.server_config.read_text() if args.server_config else ""},
            "workload": token_stats(model_dir, requests),
        }
        print(f"workload: {result['workload']}", flush=True)
        with reward_server(model_dir, args.device, args.server_config) as server:
            address, log = server.address, server.log
            ways = {"server": lambda: server_way(address, log, callers, requests)}
            if not args.skip_seed:
                ways["seed"] = lambda: seed_way(model_dir, args.device, seed_requests)
            result |= interleave(args.rounds, ways)
            server_rate = median_of(result["server"], "sequences_per_s")
            if not args.skip_seed:
                result["server_vs_seed"] = round(server_rate / median_of(result["seed"], "sequences_per_s"), 2)
            result["agreement_with_pipeline"] = agreement(address, model_dir, args.device, requests[0])
            if gpu:
                result["gpu"] = gpu_figures(model_dir, args.device, address, log, callers, requests, completions)
            if args.server_log:
                args.server_log.write_text(log.read_text())
        if gpu or args.raw:
            batches = [r[0][i : i + 128] for r in requests for i in range(0, len(r[0]), 128)]
            result["raw"] = raw_forward(model_dir, args.device, batches)
            result["server_vs_raw"] = round(server_rate / result["raw"]["sequences_per_s"], 3)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("seed", "server")}, indent=2))
    print(f"server {server_rate} seq/s; x{result.get('server_vs_seed')} the seed's way; wrote {out}")
    return 0


def gpu_figures(
    model_dir: Path, device: str, address: str, log: Path, callers: int, requests: list[Request], completions: int
) -> dict[str, Any]:
    """Sequences/s at 128 and 512 tokens (raw and served) and the latency of one request alone."""
    figures: dict[str, Any] = {}
    for tokens, words, scale in ((128, (90, 100), 4), (512, (450, 600), 1)):
        fixed = make_requests(tokens, len(requests) * scale, completions, words, same_references=True)
        figures[f"workload_{tokens}_tokens"] = token_stats(model_dir, fixed)
        figures[f"server_{tokens}_tokens"] = server_way(address, log, callers, fixed)
        figures[f"raw_{tokens}_tokens_sequences_per_s"] = round(raw_fixed_length(model_dir, device, tokens, 128, 20), 1)
    alone = make_requests(7, 50, completions, (200, 400))
    figures["one_caller"] = server_way(address, log, 1, alone)
    return figures


if __name__ == "__main__":
    sys.exit(main())
