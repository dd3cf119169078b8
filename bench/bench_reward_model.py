"""Reward models: the server's throughput against the raw batched forward pass of the same model, side by side.

Two random-weight reward models from real configs (no download): a BERT-size classifier (bert-base shapes,
110 M parameters) and a ~1B-parameter decoder RM (Llama-3.2-1B shapes, 1.24 B parameters), both served by one
real reward server (``--reward-model bert=DIR --reward-model decoder=DIR``).

For each model, each input length (128, 512, 2,048 tokens; BERT has 512 positions, so 128 and 512) and each
number of concurrent callers (1 and 16), in alternating rounds:

- raw: the model loaded in this process (same dtype, same device) running the very same token ids in batches of
  the request size, padded, logits read back to the CPU: the ceiling;
- server: callers each sending requests of ``--request-size`` plain samples (prompt_text + completion, longer
  than the length, cut to exactly that many tokens by the ``max_length`` param) until ``--requests`` are done.

Throughput = sequences / wall time; ``server_vs_raw`` = the ratio of medians over the rounds. The first request's
scores are checked against the raw logits (``agreement``), so both ways provably ran the same inputs.

Run: ``python -m bench.bench_reward_model --device cuda`` (GPU, the figures of record),
``python -m bench.bench_reward_model --small`` (CPU: tiny models of the same architectures),
``--quick`` (a seconds-long smoke test, tests/test_bench_scripts.py). Writes
``bench/results/reward_model_<small|full>.json`` (full: the real shapes, on a GPU).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from bench.common import GRPC_OPTIONS, base_parser, start_reward_server, write_result  # noqa: E402
from reward.v1 import reward_pb2 as pb  # noqa: E402
from reward.v1 import reward_pb2_grpc  # noqa: E402
from reward_server.models.synthetic import BERT_BASE, LLAMA_1B, build_reward_model, german_text  # noqa: E402

TINY = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate": 128}
SMALL = {"hidden": 256, "layers": 4, "heads": 4, "kv_heads": 2, "intermediate": 1024}


def build_models(root: Path, size: str, gpu: bool) -> dict[str, Path]:
    """The two reward models: real shapes on a GPU, ``SMALL``/``TINY`` ones of the same architectures otherwise."""
    shapes = {"full": (BERT_BASE, LLAMA_1B), "small": (SMALL, SMALL), "quick": (TINY, TINY)}[size]
    dtype = "bfloat16" if gpu and size == "full" else "float32"
    out = {}
    for name, kind, shape, positions in (("bert", "bert", shapes[0], 512), ("decoder", "llama", shapes[1], 2048)):
        start = time.perf_counter()
        out[name] = build_reward_model(root / name, kind, max_positions=positions, dtype=dtype, **shape)
        print(f"built {name} ({kind}, {shape}) in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def make_requests(seed: int, count: int, size: int, tokens: int) -> list[list[tuple[str, str]]]:
    """``count`` requests of ``size`` (prompt, completion) pairs, each longer than ``tokens`` tokens."""
    import random

    rng = random.Random(seed)
    return [
        [(german_text(rng, 12) + "\n", german_text(rng, tokens + rng.randint(0, 32))) for _ in range(size)]
        for _ in range(count)
    ]


def token_ids(model_dir: Path, requests: list, tokens: int) -> list[list[list[int]]]:
    """The ids the server runs: prompt + completion, no special tokens, cut to ``tokens`` on the right."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return [
        [ids[:tokens] for ids in tokenizer([p + c for p, c in r], add_special_tokens=False)["input_ids"]]
        for r in requests
    ]


class Raw:
    """The model in this process: batched forward passes over pre-tokenized, padded batches."""

    def __init__(self, model_dir: Path, device: str, dtype: str) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch, self.device = torch, device
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        model.config.pad_token_id = self.pad
        self.model = model.to(device).eval()

    def batches(self, ids: list[list[list[int]]]) -> list[dict[str, Any]]:
        torch = self.torch
        out = []
        for batch in ids:
            width = max(len(x) for x in batch)
            input_ids = torch.tensor([x + [self.pad] * (width - len(x)) for x in batch])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch])
            out.append({"input_ids": input_ids, "attention_mask": mask})
        return out

    def run(self, batches: list[dict[str, Any]]) -> tuple[float, list[list[float]]]:
        """Seconds for every batch (copy in, forward, logits back) and the first batch's logits."""
        torch = self.torch
        first: list[list[float]] = []
        with torch.inference_mode():
            self.model(**{k: v.to(self.device) for k, v in batches[0].items()})  # warm-up
            self._sync()
            start = time.perf_counter()
            for i, batch in enumerate(batches):
                logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits.float().cpu()
                if i == 0:
                    first = logits.tolist()
            self._sync()
        return time.perf_counter() - start, first

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


def served(address: str, reward: str, requests: list, tokens: int, callers: int) -> tuple[float, list[float]]:
    """Wall seconds for ``callers`` concurrent callers sending ``requests``, and the first request's scores."""
    stubs = [reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(address, options=GRPC_OPTIONS))]
    stubs += [reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(address)) for _ in range(callers - 1)]
    params = {"max_length": tokens}
    messages = []
    for r in requests:
        spec = pb.RewardSpec(name=reward)
        spec.params.update(params)
        samples = [pb.Sample(completion=c, prompt_text=p) for p, c in r]
        messages.append(pb.ScoreRequest(samples=samples, rewards=[spec]))
    first = list(stubs[0].Score(messages[0], timeout=600).results[0].scores)  # warm-up, and the check
    start = time.perf_counter()

    def caller(i: int) -> None:
        for message in messages[i::callers]:
            stubs[i].Score(message, timeout=600)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, first


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--small", action="store_true", help="CPU figures: small models of the same architectures")
    parser.add_argument("--lengths", type=int, nargs="+", help="input lengths in tokens (default 128 512 2048)")
    parser.add_argument("--callers", type=int, nargs="+", help="concurrent callers (default 1 16)")
    parser.add_argument("--request-size", type=int, help="samples per request = raw batch size (default 64, CPU 8)")
    parser.add_argument(
        "--requests",
        type=int,
        help="requests per measurement (default on a GPU: 64 at 128 tokens, 32 at 512, 16 at 2,048, so that each "
        "measurement is about a million tokens or more and a run fits a short GPU lease; CPU 16)",
    )
    parser.add_argument("--rounds", type=int, help="alternating rounds of raw and server (default 3)")
    parser.add_argument("--models", nargs="+", default=["bert", "decoder"], help="bert, decoder")
    parser.add_argument(
        "--tokenize-only",
        action="store_true",
        help="only the server's tokenizing: the requests' texts encoded as its two tokenizer threads encode them",
    )
    args = parser.parse_args(argv)
    gpu = args.device.startswith("cuda")
    size = "quick" if args.quick else "small" if args.small or not gpu else "full"
    lengths = args.lengths or ([128] if args.quick else [128, 512, 2048])
    callers_list = args.callers or ([1, 2] if args.quick else [1, 16])
    request_size = args.request_size or (64 if gpu else 4 if args.quick else 8)

    def requests_at(tokens: int) -> int:
        if args.requests:
            return args.requests
        return max(16, min(64, 64 * 256 // tokens)) if gpu else 2 if args.quick else 16

    rounds = args.rounds or (1 if args.quick else 3)
    dtype = "bfloat16" if gpu and size == "full" else "float32"
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        dirs = build_models(Path(tmp), size, gpu)
        flags = [f for name in args.models for f in ("--reward-model", f"{name}={dirs[name]}")]
        config = Path(tmp) / "server.yaml"
        # Batches as big as a request, and a token budget that never splits one.
        config.write_text(f"model_max_batch_size: {request_size}\nmodel_max_batch_tokens: {request_size * 2048}\n")
        if args.tokenize_only:
            for name in args.models:
                for tokens in lengths:
                    if name == "bert" and tokens > 512:
                        continue
                    requests = make_requests(tokens, requests_at(tokens), request_size, tokens)
                    row = {"model": name, "tokens": tokens} | tokenize_rate(dirs[name], requests, tokens, rounds)
                    results.append(row)
                    print(row, flush=True)
            size += "_tokenize"
        with contextlib.ExitStack() as stack:
            if not args.tokenize_only:
                flags += ["--device", args.device, "--config", str(config)]
                server = stack.enter_context(start_reward_server(1, *flags, timeout=900))
            for name in [] if args.tokenize_only else args.models:
                raw = Raw(dirs[name], args.device, dtype)
                for tokens in lengths:
                    if name == "bert" and tokens > 512:
                        continue  # BERT has 512 positions
                    requests = make_requests(tokens, requests_at(tokens), request_size, tokens)
                    batches = raw.batches(token_ids(dirs[name], requests, tokens))
                    for callers in callers_list:
                        row = measure(server.address, name, raw, batches, requests, tokens, callers, rounds)
                        results.append(row)
                        print(row, flush=True)
                del raw
    payload = {
        "config": {"device": args.device, "size": size, "dtype": dtype, "quick": args.quick, "rounds": rounds}
        | {"request_size": request_size, "requests": {t: requests_at(t) for t in lengths}}
        | {"lengths": lengths, "callers": callers_list},
        "results": results,
    }
    write_result("reward_model", payload, args.out or REPO / "bench" / "results" / f"reward_model_{size}.json")
    return 0


def tokenize_rate(model_dir: Path, requests: list, tokens: int, rounds: int) -> dict[str, Any]:
    """Sequences/s of the server's tokenizing alone: each request's texts encoded in one call, as
    ``Classifier.encode`` does without special tokens (tokenize, then cut), on two threads as the model batcher's
    tokenizer threads run, plus one thread for comparison."""
    from concurrent.futures import ThreadPoolExecutor

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def encode(request: list[tuple[str, str]]) -> int:
        batch = tokenizer([p + c for p, c in request], add_special_tokens=False)
        return sum(len(ids[:tokens]) for ids in batch["input_ids"])

    sequences = sum(len(r) for r in requests)
    out: dict[str, Any] = {}
    for threads in (1, 2):
        rates = []
        with ThreadPoolExecutor(threads) as pool:
            for _ in range(rounds):
                start = time.perf_counter()
                list(pool.map(encode, requests))
                rates.append(sequences / (time.perf_counter() - start))
        out[f"tokenize_sequences_per_s_{threads}_threads"] = [round(x, 1) for x in rates]
    return out


def measure(
    address: str, name: str, raw: Raw, batches: list, requests: list, tokens: int, callers: int, rounds: int
) -> dict[str, Any]:
    """``rounds`` alternating runs of the raw loop and the server on the same inputs; rates and their ratio."""
    sequences = sum(len(r) for r in requests)
    raw_rates, server_rates = [], []
    diff = 0.0
    for r in range(rounds):
        order = ("raw", "server") if r % 2 == 0 else ("server", "raw")
        for way in order:
            if way == "raw":
                seconds, logits = raw.run(batches)
                raw_rates.append(sequences / seconds)
            else:
                seconds, scores = served(address, name, requests, tokens, callers)
                server_rates.append(sequences / seconds)
        diff = max(diff, max(abs(s - row[0]) for s, row in zip(scores, logits, strict=True)))
    raw_median, server_median = statistics.median(raw_rates), statistics.median(server_rates)
    return {
        "model": name,
        "tokens": tokens,
        "callers": callers,
        "raw_sequences_per_s": [round(x, 1) for x in raw_rates],
        "server_sequences_per_s": [round(x, 1) for x in server_rates],
        "server_vs_raw": round(server_median / raw_median, 3),
        "agreement_max_abs_diff": diff,
    }


if __name__ == "__main__":
    sys.exit(main())
