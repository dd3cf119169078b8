"""grpo-train end to end on CPU: a seed recipe, a tiny Qwen2 model, the real reward server, real TRL + LoRA.

What is checked server-side (the server logs one ``Score request_id=... samples=N`` line per call) and
what TRL logged (``trainer_state.json``) are compared with each other and with fresh server scores.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import NOTEBOOK_REWARDS, REPO, start_server, stop_server
from tiny_models import build_tiny_causal_lm, write_tiny_dataset

from trainer_client import RewardClient

SEED002 = REPO / "configs" / "seed002_qwen2.5-1.5b_gsm8k.yaml"
# The seed's five rewards plus one that varies on a random model's output, weighted, so the comparison below
# compares numbers that differ from sample to sample (the xml rewards score 0 on random text).
REWARDS = [
    *NOTEBOOK_REWARDS,
    {"name": "tfidf_similarity", "weight": 2.0, "params": {"reference_field": "question", "language": "none"}},
]
REWARD_NAMES = [r if isinstance(r, str) else r["name"] for r in REWARDS]
GRPO_TRAIN = str(Path(sys.executable).parent / "grpo-train")
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "0",
}
SCORE_LINE = re.compile(r"Score request_id=(\S+) samples=(\d+)")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"model": build_tiny_causal_lm(root / "tiny-qwen2"), "data": write_tiny_dataset(root / "gsm8k.jsonl")}


def overrides(tiny: dict[str, Path], target: str, out: Path, steps: int, rewards: list | None = None) -> list[str]:
    """The test's --set overrides: tiny model and data, a few small CPU steps, the test's server (and rewards)."""
    values = {
        "model.name_or_path": tiny["model"],
        "model.dtype": "float32",
        "dataset.path": tiny["data"],
        "reward_server.target": target,
        "reward_server.record_to": out / "scored.jsonl",
        "rewards": json.dumps(REWARDS if rewards is None else rewards),
        "training.use_cpu": "true",
        "training.bf16": "false",
        "training.output_dir": out,
        "training.max_steps": steps,
        "training.per_device_train_batch_size": 4,
        "training.num_generations": 4,
        "training.gradient_accumulation_steps": 1,
        "training.max_completion_length": 16,
        "training.logging_steps": 1,
        "training.save_steps": 100,
    }
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def grpo_train(args: list[str], config: Path = SEED002) -> subprocess.Popen:
    return subprocess.Popen(
        [GRPO_TRAIN, "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, **OFFLINE},
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    return output


def step_logs(out: Path, steps: int, reward: str = "correctness_reward_func") -> list[dict]:
    state = json.loads((out / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == steps
    return [entry for entry in state["log_history"] if f"rewards/{reward}/mean" in entry]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "scored.jsonl").read_text().splitlines()]


def nanmean(values: list[float | None]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("train-server"), "--workers", "1")
    yield running
    stop_server(running)


def test_grpo_train_scores_every_batch_with_one_remote_call(server, tiny, tmp_path) -> None:
    steps, out = 3, tmp_path / "out"
    finish(grpo_train(overrides(tiny, server.address, out, steps)))

    # The LoRA adapter checkpoint exists and loads with peft on the base model.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    checkpoint = out / f"checkpoint-{steps}"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny["model"]), checkpoint)
    config = model.peft_config["default"]
    assert config.r == 8 and set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert (out / "adapter_model.safetensors").is_file()  # the final adapter, saved at the top

    # TRL logged one entry per reward per step, under the names the recipe used, plus the round trip.
    logs = step_logs(out, steps)
    assert [entry["step"] for entry in logs] == list(range(1, steps + 1))
    for entry in logs:
        logged = {key.split("/")[1] for key in entry if key.startswith("rewards/") and key.endswith("/mean")}
        assert logged == set(REWARD_NAMES)
        assert entry["reward_service/rtt_ms"] > 0 and entry["reward_service/failed"] == 0

    # The server saw exactly one Score call per batch (one batch per step here), of 4 samples each.
    calls = SCORE_LINE.findall(server.log())
    assert len(calls) == steps and all(int(n) == 4 for _, n in calls)
    scored = records(out)
    assert [r["request_id"] for r in scored] == [request_id for request_id, _ in calls]
    assert all(request_id.startswith("grpo-r0-s") for request_id, _ in calls)

    # What TRL logged equals what the server computes for the same completions, scored afresh.
    client = RewardClient(server.address)
    varied = set()
    for entry, record in zip(logs, scored, strict=True):
        again = client.score(record["samples"], REWARDS)
        for name in REWARD_NAMES:
            assert entry[f"rewards/{name}/mean"] == pytest.approx(nanmean(again[name]), abs=1e-6), name
            varied |= {name} if len(set(again[name])) > 1 else set()
        assert entry["reward"] == pytest.approx(nanmean(again.total), abs=1e-5)  # weights applied alike
    assert "tfidf_similarity" in varied  # the comparison was not only between zeros


def test_training_survives_a_replica_killed_mid_training(tiny, tmp_path) -> None:
    steps, out = 10, tmp_path / "out"
    with ThreadPoolExecutor(2) as pool:
        replicas = list(pool.map(lambda name: start_server(tmp_path, "--workers", "1"), "ab"))
    try:
        target = ",".join(r.address for r in replicas)
        process = grpo_train(overrides(tiny, target, out, steps))
        scored = out / "scored.jsonl"
        while process.poll() is None and not (scored.exists() and len(scored.read_text().splitlines()) >= 2):
            time.sleep(0.02)
        # Kill (SIGKILL, no goodbye) a replica that has served this training.
        victim = next(r for r in replicas if SCORE_LINE.search(r.log()))
        survivor = next(r for r in replicas if r is not victim)
        victim.process.kill()
        victim.process.wait()
        done_at_kill = len(scored.read_text().splitlines())
        survivor_at_kill = len(SCORE_LINE.findall(survivor.log()))
        finish(process)
    finally:
        for replica in replicas:
            stop_server(replica)

    assert done_at_kill < steps  # the kill really happened mid-training
    logs = step_logs(out, steps)
    assert len(logs) == steps  # no failed step: every step logged, every reward finite
    for entry in logs:
        assert entry["reward_service/failed"] == 0
        assert all(math.isfinite(entry[f"rewards/{name}/mean"]) for name in REWARD_NAMES)
    assert len(records(out)) == steps
    assert len(SCORE_LINE.findall(survivor.log())) >= survivor_at_kill + (steps - done_at_kill)


def test_every_rank_scores_its_own_shard(server, tiny, tmp_path) -> None:
    # Two CPU ranks (torchrun + gloo, what `accelerate launch` does on GPUs): one Score call per batch per rank.
    steps, out = 2, tmp_path / "out"
    before = len(SCORE_LINE.findall(server.log()))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    args = [*overrides(tiny, server.address, out, steps), "--set", "training.ddp_backend=gloo"]
    process = subprocess.Popen(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "trainer_client.train",
            "--config",
            str(SEED002),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, **OFFLINE, "OMP_NUM_THREADS": "1"},
    )
    finish(process)
    calls = [request_id for request_id, _ in SCORE_LINE.findall(server.log())[before:]]
    assert sorted(re.sub(r"-[0-9a-f]{8}$", "", c) for c in calls) == sorted(
        f"grpo-r{rank}-s{step}" for rank in (0, 1) for step in range(steps)
    )
    shards = [
        [json.loads(line) for line in (out / f"scored.rank{rank}.jsonl").read_text().splitlines()] for rank in (0, 1)
    ]
    logs = step_logs(out, steps)
    for step, entry in enumerate(logs):
        # TRL gathers both ranks' rewards before logging: the logged mean is over both shards.
        both = [t for shard in shards for t in shard[step]["total"]]
        assert len(both) == 8 and entry["reward"] == pytest.approx(nanmean(both), abs=1e-5)
        for name in REWARD_NAMES:
            scores = [s for shard in shards for s in shard[step]["scores"][name]]
            assert entry[f"rewards/{name}/mean"] == pytest.approx(nanmean(scores), abs=1e-6)
