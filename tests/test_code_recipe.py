"""The code recipe (configs/code_openr1_*.yaml) trains through the service; the clients send verification_info typed.

One GRPO step on a tiny Qwen2 model (CPU, real TRL + LoRA) over the shipped problems, scored by a real server running
the programs in its real sandbox; ``reward-score`` scores a JSONL of the shipped solutions; both send the problems'
``verification_info`` as a typed field (a JSON object, not text).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from conftest import REPO, run_module, start_server, stop_server
from tiny_models import build_tiny_causal_lm

from trainer_client.convert import to_sample
from trainer_client.recipes import load_recipe

RECIPE = REPO / "configs" / "code_openr1_qwen2.5-1.5b.yaml"
PROBLEMS = REPO / "reward_server" / "code" / "problems.jsonl"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("code-recipe"), "--workers", "1")
    yield running
    stop_server(running)


def test_the_recipe_is_open_r1s_code_setup() -> None:
    recipe = load_recipe(RECIPE)
    assert [(r.name, r.weight) for r in recipe.rewards] == [("open_r1_code", 1.0), ("open_r1_code_format", 0.1)]
    assert "<think>" in recipe.prompt.system and "<answer>" in recipe.prompt.system
    assert recipe.dataset.columns["verification_info"] == "verification_info"


def test_code_recipe_trains_one_step_on_the_shipped_problems(server, tmp_path) -> None:
    from trainer_client import train

    out = tmp_path / "out"
    overrides = {
        "model.name_or_path": build_tiny_causal_lm(tmp_path / "tiny-qwen2"),
        "model.dtype": "float32",
        "dataset.path": PROBLEMS,
        "reward_server.target": server.address,
        "reward_server.record_to": out / "scored.jsonl",
        "training.use_cpu": "true",
        "training.bf16": "false",
        "training.output_dir": out,
        "training.max_steps": 1,
        "training.save_steps": 1,
        "training.per_device_train_batch_size": 4,
        "training.num_generations": 4,
        "training.gradient_accumulation_steps": 1,
        "training.max_completion_length": 16,
    }
    recipe = load_recipe(RECIPE, [f"{key}={value}" for key, value in overrides.items()])
    assert train.run(recipe) == 0
    state = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())
    (logged,) = [entry for entry in state["log_history"] if "rewards/open_r1_code/mean" in entry]
    for name in ("open_r1_code", "open_r1_code_format"):
        assert math.isfinite(logged[f"rewards/{name}/mean"]), name
    assert logged["reward_service/failed"] == 0
    (batch,) = [json.loads(line) for line in (out / "scored.jsonl").read_text().splitlines()]
    # The problems' tests went as JSON objects (typed fields), and every completion's program was graded.
    assert all(isinstance(s["fields"]["verification_info"], dict) for s in batch["samples"])
    assert all(s["fields"]["verification_info"]["test_cases"] for s in batch["samples"])
    verdicts = batch["extra_columns"]["open_r1_code"]["open_r1_code_verdicts"]
    assert len(verdicts) == 4 and all(re.match(r"\d+/\d+ passed", v) for v in verdicts)


def test_reward_score_sends_verification_info_typed(server, tmp_path: Path) -> None:
    problems = [json.loads(line) for line in PROBLEMS.read_text().splitlines()]
    lines = []
    for problem in problems[:3]:
        language = problem["verification_info"]["language"]
        completion = f"```{language}\n{problem['reference']}```"
        lines.append({"completion": completion, "fields": {"verification_info": problem["verification_info"]}})
    typed = to_sample(lines[0]).typed_fields["verification_info"]
    assert typed.struct_value["language"] == "python" and "verification_info" not in to_sample(lines[0]).fields
    source = tmp_path / "samples.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_module(
        "trainer_client.score_cli", str(source), "-o", str(tmp_path / "scores.jsonl"),
        "--target", server.address, "--reward", "code_pass_rate",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    scored = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [s["scores"]["code_pass_rate"] for s in scored] == [1.0, 1.0, 1.0]
