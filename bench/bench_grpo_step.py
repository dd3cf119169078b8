"""Goal 4: time of one GRPO step with remote rewards vs the same rewards in-process (TRL, tiny Qwen2, LoRA).

Two TRL ``GRPOTrainer`` s train the same tiny random Qwen2 model (``tests/tiny_models.py``) with
LoRA on the same prompts: one with the seed reward functions in-process (``bench/seed_rewards.py``,
called by TRL one after the other), one with ``trainer_client.remote_reward_funcs`` scoring through
the real reward server (one Score call per batch). Runs alternate (in-process, remote,
in-process, ...); every run's first step is a warm-up and is not counted. A step is timed from
TRL's ``on_step_begin`` to ``on_step_end``: generation, rewards, loss, backward, optimizer.

The learning rate is 0 by default: both trainers then sample exactly the same completions at
every step (same seed, same policy), so the two step times differ by the reward path alone. With a
learning rate the policies drift apart (the two reward sets do not score identically: the service
fixes the seeds' bugs), completion lengths differ, and so do step times for reasons that have
nothing to do with where rewards run. The mean completion length per step is recorded to show it.

The time spent on rewards inside a step is recorded too: the in-process functions are timed
around their calls, the remote ones report their round trip.

Run: ``python -m bench.bench_grpo_step [--rounds 5] [--device cpu]`` → ``bench/results/grpo_step.json``; on a GPU,
``--device cuda --prompts 16 --max-completion-length 384`` (128 completions of about 1.5 KB per step).
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import seed_rewards
from bench.common import REPO, base_parser, start_reward_server, summary, write_result
from bench.workload import SEED_REWARDS, make_batch
from reward_server.config import ServerConfig

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "0",
}


def tiny_model(directory: Path) -> Path:
    """The test suite's tiny Qwen2 (random weights, local tokenizer): nothing is downloaded."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import build_tiny_causal_lm

    return build_tiny_causal_lm(directory)


def dataset(prompts: int) -> Any:
    """Conversational prompts with the seed workload's ``answer``/``solution`` columns."""
    from datasets import Dataset

    batch = make_batch(prompts=prompts, per_prompt=1)
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Aufgabe {i}: Erkläre die Rechnung. {answer[:80]}"}],
            "answer": answer,
            "solution": solution,
        }
        for i, (answer, solution) in enumerate(zip(batch.answers, batch.solutions, strict=True))
    ]
    return Dataset.from_list(rows)


def as_async(function: Callable[..., list[float]]) -> Callable[..., Any]:
    """The same reward function as a coroutine: TRL then runs it on its async loop, like the remote ones."""

    @functools.wraps(function)
    async def call(*args: Any, **kwargs: Any) -> list[float]:
        return function(*args, **kwargs)

    return call


class Timed:
    """Wraps in-process reward functions and adds up the time spent in them per step."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable[..., list[float]]) -> Callable[..., list[float]]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> list[float]:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def step_timer() -> Any:
    """A TrainerCallback recording each step's wall time (and the reward time reported by a probe)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[float] = []
            self.reward_s: list[float] = []
            self.lengths: list[float] = []
            self.probe: Callable[[], float] = lambda: 0.0
            self._start = 0.0
            self._reward_start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()
            self._reward_start = self.probe()

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(time.perf_counter() - self._start)
            self.reward_s.append(self.probe() - self._reward_start)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(float(logs["completions/mean_length"]))

    return StepTimer()


def train(
    model_dir: Path, data: Any, reward_funcs: list, probe: Callable[[], float], args: Any, out: Path
) -> tuple[list[float], list[float], list[float]]:
    """Run ``args.steps`` GRPO steps: step times, reward times, mean completion lengths (first step dropped)."""
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    config = GRPOConfig(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.prompts * args.per_prompt,
        num_generations=args.per_prompt,
        gradient_accumulation_steps=1,
        max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate,
        beta=0.0,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=args.device == "cpu",
        bf16=args.device != "cpu",
        seed=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"
    )
    timer = step_timer()
    timer.probe = probe
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=data,
        peft_config=lora,
        callbacks=[timer],
    )
    trainer.train()
    return timer.steps[1:], timer.reward_s[1:], timer.lengths[1:]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps per run (the first is a warm-up)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs per mode")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--per-prompt", type=int, default=8, help="completions per prompt (num_generations)")
    parser.add_argument("--max-completion-length", type=int, default=64, help="tokens per completion")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["in_process", "remote", "in_process_async"],
        choices=["in_process", "remote", "in_process_async"],
        help="in_process_async: the same in-process functions made async (TRL's async path, no network)",
    )
    parser.add_argument("--learning-rate", type=float, default=0.0, help="0: identical completions in both modes")
    parser.add_argument("--workers", type=int, default=ServerConfig().workers, help="reward server worker processes")
    args = parser.parse_args()
    if not {"in_process", "remote"} <= set(args.modes):
        parser.error("--modes must include in_process and remote (their ratio is the figure)")
    if args.quick:
        args.steps, args.rounds, args.prompts, args.per_prompt, args.max_completion_length = 2, 1, 2, 2, 8
    os.environ.update(OFFLINE)
    from trainer_client import RewardClient, remote_reward_funcs

    workdir = Path(tempfile.mkdtemp(prefix="bench-grpo-"))
    model_dir = tiny_model(workdir / "tiny-qwen2")
    data = dataset(args.prompts)
    timed = Timed()
    in_process = [timed.wrap(f) for f in seed_rewards.SEED_FUNCS]
    modes = {m: {"step_s": [], "reward_s": [], "mean_tokens": [], "run_medians": []} for m in args.modes}
    with start_reward_server(args.workers) as server:
        client = RewardClient(server.address)
        remote = remote_reward_funcs(client, list(SEED_REWARDS))
        shared = remote[0].remote
        probes = {"in_process": lambda: timed.seconds, "in_process_async": lambda: timed.seconds}
        probes["remote"] = lambda: sum(shared.stats.rtt_ms) / 1000
        funcs = {"in_process": in_process, "in_process_async": [as_async(f) for f in in_process], "remote": remote}
        for r in range(args.rounds):
            # Each round rotates the order, so that no mode always runs first (or right after another).
            for mode in args.modes[r % len(args.modes) :] + args.modes[: r % len(args.modes)]:
                steps, rewards, lengths = train(
                    model_dir, data, funcs[mode], probes[mode], args, workdir / f"{mode}-{r}"
                )
                modes[mode]["step_s"] += steps
                modes[mode]["reward_s"] += rewards
                modes[mode]["mean_tokens"] += lengths
                modes[mode]["run_medians"].append(statistics.median(steps))
                print(f"round {r} {mode}: steps {[round(s, 3) for s in steps]} s")
        client.close()
    results = {
        mode: {
            "step": summary(m["step_s"]),
            "reward_in_step": summary(m["reward_s"]),
            "mean_completion_tokens_per_step": m["mean_tokens"],
        }
        for mode, m in modes.items()
    }
    medians = {mode: statistics.median(m["step_s"]) for mode, m in modes.items()}
    ratio = medians["remote"] / medians["in_process"]
    # Each remote run against the in-process run of the same round: the pairs share the machine's state.
    paired = [r / i for r, i in zip(modes["remote"]["run_medians"], modes["in_process"]["run_medians"], strict=True)]
    print(f"remote / in-process step time: {ratio:.3f}, median of paired runs {statistics.median(paired):.3f}")
    ratios = {f"{a}_over_{b}": round(medians[a] / medians[b], 4) for a in medians for b in medians if a < b}
    write_result(
        "grpo_step" if args.device == "cpu" else f"grpo_step_{args.device}",
        {
            "goal": "remote step median <= 1.05 x in-process step median",
            "config": {
                "model": "tiny Qwen2 (tests/tiny_models.py: hidden 256, 2 layers, random weights), LoRA r=8",
                "device": args.device,
                "completions_per_step": args.prompts * args.per_prompt,
                "num_generations": args.per_prompt,
                "max_completion_length": args.max_completion_length,
                "learning_rate": args.learning_rate,
                "rewards": list(SEED_REWARDS),
                "steps_per_run": args.steps,
                "rounds": args.rounds,
                "reward_server_workers": args.workers,
            },
            "results": results,
            "remote_over_in_process": round(ratio, 4),
            "paired_run_ratios": [round(x, 4) for x in paired],
            "median_paired_ratio": round(statistics.median(paired), 4),
            "ratios_of_medians": ratios,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
