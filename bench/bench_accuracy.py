"""TRL's ``accuracy_reward`` in-process against the service's ``accuracy_reward``, side by side in one run.

The batch: 128 boxed-answer completions of about 1.75 KB (worked text, then ``\\boxed{...}``; half of
them right), 16 prompts × 8 completions, with the solution of each prompt. Round-robin, so both
share the machine's noise: TRL's function called in-process on the main thread (its math-verify
time limits on, as a single-process trainer runs it), and one Score call to the real server
(``--workers`` processes, each sample of math-verify in a helper process under a hard limit). The scores
are checked equal before anything is timed. Then the other rewards of TRL and open-r1 served here,
each alone on the same batch (with token ids), remote, and TRL's in-process where TRL has one.

Run: ``python -m bench.bench_accuracy [--repeats 30] [--workers 2]`` → ``bench/results/accuracy.json``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import grpc
from google.protobuf import struct_pb2
from trl.rewards import (
    accuracy_reward,
    get_cosine_scaled_reward,
    get_repetition_penalty_reward,
    get_soft_overlong_punishment,
    reasoning_accuracy_reward,
    think_format_reward,
)

from bench.common import (
    GRPC_OPTIONS,
    base_parser,
    interleaved,
    ratio_summary,
    start_reward_server,
    summary,
    write_result,
)
from reward.v1 import reward_pb2 as pb
from reward.v1 import reward_pb2_grpc

#: Served rewards timed alone after the head-to-head, with their params (the token-length ones get a max length).
OTHERS: dict[str, dict] = {
    "reasoning_accuracy_reward": {},
    "think_format_reward": {},
    "cosine_scaled_reward": {"max_len": 512},
    "repetition_penalty_reward": {},
    "soft_overlong_punishment_reward": {"max_completion_len": 512, "soft_punish_cache": 128},
    "math_equivalence": {"reference_field": "solution"},
    "open_r1_accuracy": {},
    "open_r1_format": {},
    "open_r1_tag_count": {},
    "open_r1_reasoning_steps": {},
    "open_r1_cosine": {},
    "open_r1_repetition_penalty": {},
    "open_r1_length": {"per_prompt": True},
}
TOKEN_READERS = {"cosine_scaled_reward", "repetition_penalty_reward", "soft_overlong_punishment_reward"}
STEPS = [
    "We rewrite the expression by collecting like terms, which gives {a}x + {b} = {c}. ",
    "Subtracting {b} from both sides leaves {a}x = {d}, and dividing by {a} isolates x. ",
    "As a check, substituting back yields {a} times the candidate plus {b}, which matches {c}. ",
    "Next, we consider whether the fraction can be reduced: gcd({d}, {a}) decides this. ",
]


def make_samples(n: int, size: int = 1750, seed: int = 0) -> tuple[list[str], list[str], list[str], list[list[int]]]:
    """``n`` completions of about ``size`` characters, 8 per prompt: (completions, solutions, prompts, token ids)."""
    rng = random.Random(seed)
    completions, solutions, prompts, ids = [], [], [], []
    for i in range(n):
        group = i // 8
        grng = random.Random(seed * 1000 + group)
        a, b = grng.randint(2, 9), grng.randint(1, 30)
        d = grng.randint(1, 60)
        c = d + b
        answer = f"\\frac{{{d}}}{{{a}}}"
        words = ["<think>\n"]
        while sum(map(len, words)) < size - 120:
            words.append(rng.choice(STEPS).format(a=a, b=b, c=c, d=d))
        words.append("\n</think>\n")
        given = answer if rng.random() < 0.5 else f"\\frac{{{d + 1}}}{{{a}}}"
        words.append(f"So x = {given}, and the final answer is $\\boxed{{{given}}}$.")
        text = "".join(words)
        completions.append(text)
        solutions.append(f"${answer}$")
        prompts.append(f"Solve {a}x + {b} = {c} for x.")
        ids.append([rng.randrange(5000) for _ in range(len(text) // 4)])  # ~4 characters per token
    return completions, solutions, prompts, ids


def request(
    completions: Sequence[str], solutions: Sequence[str], prompts: Sequence[str], ids, name: str, params: dict
) -> pb.ScoreRequest:
    struct = struct_pb2.Struct()
    struct.update(params)
    samples = []
    for i, (c, s, p) in enumerate(zip(completions, solutions, prompts, strict=True)):
        sample = pb.Sample(prompt_text=p, completion=c, fields={"solution": s})
        if ids:  # as the TRL adapter does: token ids only for a reward that reads them
            sample.completion_ids.ids.extend(ids[i])
        samples.append(sample)
    return pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name=name, params=struct)])


def trl_in_process(name: str, params: dict, chat, solutions, ids) -> Callable[[], list] | None:
    """TRL's own function for a served reward (None where TRL has none)."""
    funcs: dict[str, Callable[[], list]] = {
        "accuracy_reward": lambda: accuracy_reward(chat, solutions),
        "reasoning_accuracy_reward": lambda: reasoning_accuracy_reward(chat, solutions),
        "think_format_reward": lambda: think_format_reward(chat),
        "cosine_scaled_reward": lambda: get_cosine_scaled_reward(**params)(chat, solutions, ids),
        "repetition_penalty_reward": lambda: get_repetition_penalty_reward(**params)(ids),
        "soft_overlong_punishment_reward": lambda: get_soft_overlong_punishment(**params)(ids),
    }
    return funcs.get(name)


def same(a: Sequence[float | None], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all((x is None and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="head-to-head rounds (each: one batch per side)")
    parser.add_argument("--other-repeats", type=int, default=5, help="rounds per other reward")
    parser.add_argument("--workers", type=int, default=2, help="server scoring workers")
    parser.add_argument("--samples", type=int, default=128)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.other_repeats, args.samples = 2, 1, 16

    completions, solutions, prompts, ids = make_samples(args.samples)
    chat = [[{"role": "assistant", "content": c}] for c in completions]
    with start_reward_server(args.workers) as server:
        channel = grpc.insecure_channel(server.address, options=GRPC_OPTIONS)
        stub = reward_pb2_grpc.RewardServiceStub(channel)

        def remote(name: str, params: dict) -> Callable[[], list[float]]:
            message = request(completions, solutions, prompts, ids if name in TOKEN_READERS else None, name, params)
            return lambda: list(stub.Score(message, timeout=600).results[0].scores)

        head = {"in_process_trl": lambda: accuracy_reward(chat, solutions), "remote": remote("accuracy_reward", {})}
        expected, served = head["in_process_trl"](), head["remote"]()
        if not same(expected, served):
            raise SystemExit(f"accuracy_reward: the service's scores differ from TRL's: {expected} vs {served}")
        times = interleaved(head, repeats=args.repeats, warmup=1)

        others: dict[str, dict] = {}
        for name, params in OTHERS.items():
            candidates = {"remote": remote(name, params)}
            local = trl_in_process(name, params, chat, solutions, ids)
            if local is not None:
                candidates["in_process_trl"] = local
            timed = interleaved(candidates, repeats=args.other_repeats, warmup=1)
            others[name] = {way: summary(t)["median_ms"] for way, t in timed.items()}
            if local is not None:
                others[name]["remote_over_in_process"] = round(
                    others[name]["remote"] / others[name]["in_process_trl"], 3
                )
        channel.close()

    chars = [len(c) for c in completions]
    write_result(
        "accuracy",
        {
            "config": {
                "samples": args.samples,
                "mean_completion_chars": round(sum(chars) / len(chars)),
                "repeats": args.repeats,
                "other_repeats": args.other_repeats,
                "workers": args.workers,
                "correct": sum(1 for s in expected if s == 1.0),
            },
            "accuracy_reward": {way: summary(t) for way, t in times.items()},
            "remote_over_in_process": ratio_summary(times["remote"], times["in_process_trl"]),
            "other_rewards_median_ms": others,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
