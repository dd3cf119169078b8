"""lora-serve's adapter checks, checkpoint discovery, vLLM command, --watch bookkeeping, and lora-eval's report.

Adapters are real PEFT adapters of a tiny Qwen2 built here (no downloads). Every invalid adapter is run through
the real ``lora-serve`` command line, which must stop with its message before it starts vLLM.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest
from conftest import REPO, run_module
from tiny_models import build_tiny_causal_lm

from inference.adapters import (
    AdapterError,
    adapters_from_run,
    find_checkpoints,
    same_base_model,
    validate_adapter,
    validate_adapters,
)
from inference.eval_cli import EvalError, dataset_examples, parse_rewards
from inference.report import markdown_table, summarize, write_report
from inference.vllm_launcher import LaunchPlan
from inference.watch import CheckpointTracker

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(base_dir: Path, out_dir: Path, *, seed: int = 1, scale: float = 0.5, **lora_kwargs) -> Path:
    """A real PEFT LoRA adapter of ``base_dir``; lora_B is filled with noise (PEFT starts it at zero, which would
    leave the outputs unchanged), so the adapter visibly changes greedy outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = _base_models.get(base_dir) or AutoModelForCausalLM.from_pretrained(base_dir)
    _base_models[base_dir] = model
    options = {"r": 8, "lora_alpha": 16, "target_modules": TARGETS, "task_type": "CAUSAL_LM", **lora_kwargs}
    with warnings.catch_warnings():
        # modules_to_save=["lm_head"] on a tied-embedding model warns; that adapter exists only to be refused.
        warnings.simplefilter("ignore", UserWarning)
        peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(**options))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in peft_model.named_parameters():
            if "lora_B" in name:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)
    peft_model.save_pretrained(str(out_dir))
    return out_dir


_base_models: dict[Path, object] = {}


def lora_serve(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The real ``lora-serve`` command line (same code as the console script)."""
    return run_module("inference.serve_cli", *args, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "base": build_tiny_causal_lm(root / "tiny-base"),
        # Same architecture, other weights: only the name check can tell it apart.
        "other": build_tiny_causal_lm(root / "tiny-other", seed=7),
        # Other hidden size: the shape check tells it apart even when names are not compared.
        "narrow": build_tiny_causal_lm(root / "tiny-narrow", hidden_size=128, num_heads=4),
    }


@pytest.fixture(scope="module")
def adapters(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    base = models["base"]
    made = {
        "good": make_adapter(base, root / "good"),
        "rank20": make_adapter(base, root / "rank20", r=20, lora_alpha=40),
        "dora": make_adapter(base, root / "dora", use_dora=True),
        "modules_to_save": make_adapter(
            base, root / "modules_to_save", target_modules=["q_proj"], modules_to_save=["lm_head"]
        ),
        "rank600": make_adapter(base, root / "rank600", r=600, target_modules=["q_proj"]),
        "bias": make_adapter(base, root / "bias", bias="all"),
        "wrong_base": make_adapter(models["other"], root / "wrong_base"),
        "narrow": make_adapter(models["narrow"], root / "narrow"),
    }
    missing_config = root / "missing_config"
    shutil.copytree(made["good"], missing_config)
    (missing_config / "adapter_config.json").unlink()
    missing_weights = root / "missing_weights"
    shutil.copytree(made["good"], missing_weights)
    (missing_weights / "adapter_model.safetensors").unlink()
    not_lora = root / "not_lora"
    shutil.copytree(made["good"], not_lora)
    config = json.loads((not_lora / "adapter_config.json").read_text())
    (not_lora / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    made.update(missing_config=missing_config, missing_weights=missing_weights, not_lora=not_lora)
    return made


# -- Validation through the real command line: each problem stops lora-serve before vLLM starts -----------------

INVALID = {
    "dora": "uses DoRA (use_dora: true), which vLLM does not support",
    "modules_to_save": "has modules_to_save=['lm_head']",
    "rank600": "rank 600 is above 512, the largest --max-lora-rank vLLM accepts",
    "missing_config": "missing adapter_config.json",
    "wrong_base": "was trained on base model",
    "missing_weights": "missing adapter weights (adapter_model.safetensors or adapter_model.bin)",
    "bias": "has bias='all'; vLLM serves only bias='none'",
    "not_lora": "peft_type is 'IA3', not 'LORA'",
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_adapter_stops_before_vllm(case: str, models: dict, adapters: dict) -> None:
    result = lora_serve("--base-model", str(models["base"]), "--adapter", f"bad={adapters[case]}", "--port", "0")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # one clear line per problem
    assert lines[0].startswith(f"lora-serve: error: adapter 'bad' ({adapters[case]}): ")
    assert INVALID[case] in lines[0]
    assert "starting vLLM" not in result.stdout
    assert "vllm" not in result.stdout.lower()


def test_wrong_base_message_names_both_models(models: dict, adapters: dict) -> None:
    result = lora_serve("--base-model", str(models["base"]), "--adapter", f"x={adapters['wrong_base']}")
    assert result.returncode == 2
    assert f"was trained on base model '{models['other']}'" in result.stderr
    assert f"not the served '{models['base']}'" in result.stderr


def test_every_problem_is_reported_at_once(models: dict, adapters: dict) -> None:
    result = lora_serve(
        "--base-model",
        str(models["base"]),
        "--adapter",
        f"a={adapters['dora']}",
        "--adapter",
        f"b={adapters['rank600']}",
        "--adapter",
        f"c={adapters['good']}",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "'a'" in lines[0] and "DoRA" in lines[0]
    assert "'b'" in lines[1] and "rank 600" in lines[1]


def test_shape_mismatch_is_caught_even_when_names_are_not_compared(models: dict, adapters: dict) -> None:
    with pytest.raises(AdapterError) as caught:
        validate_adapter("n", adapters["narrow"], str(models["base"]), allow_base_mismatch=True)
    (problem,) = caught.value.problems
    assert "LoRA shapes do not fit the base model" in problem
    assert "[8, 128]" in problem  # lora_A of the 128-wide model against the 256-wide base


def test_base_mismatch_can_be_allowed_when_shapes_fit(models: dict, adapters: dict) -> None:
    adapter = validate_adapter("w", adapters["wrong_base"], str(models["base"]), allow_base_mismatch=True)
    assert adapter.rank == 8


def test_relative_adapter_path_becomes_absolute(models: dict, adapters: dict) -> None:
    relative = os.path.relpath(adapters["good"], adapters["good"].parent.parent)
    result = lora_serve(
        "--base-model",
        str(models["base"]),
        "--adapter",
        f"rel={relative}",
        "--check",
        cwd=adapters["good"].parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert f'"path": "{adapters["good"]}"' in result.stdout


def test_missing_directory_is_named(models: dict, tmp_path: Path) -> None:
    result = lora_serve("--base-model", str(models["base"]), "--adapter", "x=./no/such/adapter", cwd=tmp_path)
    assert result.returncode == 2
    assert f"no such directory (resolved to {tmp_path / 'no/such/adapter'})" in result.stderr


# -- The vLLM command ---------------------------------------------------------------------------------------------


def test_command_has_absolute_paths_smallest_rank_and_enough_loras(models: dict, adapters: dict, tmp_path) -> None:
    run = tmp_path / "my-run"
    for step in (10, 20):
        shutil.copytree(adapters["good"], run / f"checkpoint-{step}")
    result = lora_serve(
        "--base-model",
        str(models["base"]),
        "--adapter",
        f"wide={adapters['rank20']}",
        "--from-run",
        str(run),
        "--port",
        "8123",
        "--check",
        "--",
        "--max-model-len",
        "256",
    )
    assert result.returncode == 0, result.stderr
    assert "adapters OK: wide (rank 20), my-run-step10 (rank 8), my-run-step20 (rank 8)" in result.stdout
    command = result.stdout.split("vLLM command: ", 1)[1]
    assert "-m vllm.entrypoints.openai.api_server" in command
    assert f"--model {models['base']}" in command
    assert "--max-lora-rank 32 --max-loras 3" in command  # 20 → 32, the next value vLLM allows
    assert f'"path": "{(run / "checkpoint-20").resolve()}"' in command
    assert command.rstrip().endswith("--max-model-len 256")


def test_launch_plan_respects_user_rank_and_sizes_watch_slots(models: dict, adapters: dict) -> None:
    adapter = validate_adapter("a", adapters["rank20"], str(models["base"]))
    plan = LaunchPlan(str(models["base"]), [adapter], watch_slots=2, watch_rank=None)
    assert (plan.max_lora_rank, plan.max_loras) == (64, 3)  # no checkpoint seen yet: room for rank 64
    assert plan.env({})["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    too_small = LaunchPlan(str(models["base"]), [adapter], extra_args=["--max-lora-rank", "16"])
    with pytest.raises(AdapterError, match=r"rank 20 > --max-lora-rank 16"):
        too_small.check()
    cpu = LaunchPlan(str(models["base"]), [adapter], cpu=True).command()
    assert cpu[cpu.index("--gpu-memory-utilization") + 1] == "0.3"
    mine = LaunchPlan(str(models["base"]), [adapter], cpu=True, extra_args=["--gpu-memory-utilization", "0.5"])
    assert mine.command().count("--gpu-memory-utilization") == 1


# -- Checkpoint discovery and the base-model comparison -------------------------------------------------------------


def test_from_run_names_checkpoints_by_step(adapters: dict, tmp_path: Path) -> None:
    run = tmp_path / "exp1"
    for step in (500, 20, 1000):
        shutil.copytree(adapters["good"], run / f"checkpoint-{step}")
    (run / "checkpoint-final").mkdir()  # not a step: ignored
    assert [c.step for c in find_checkpoints(run)] == [20, 500, 1000]
    assert [n for n, _ in adapters_from_run(run)] == ["exp1-step20", "exp1-step500", "exp1-step1000"]
    assert adapters_from_run(run, latest=True) == [("exp1-step1000", (run / "checkpoint-1000").resolve())]
    with pytest.raises(AdapterError, match="no checkpoint-N folders"):
        adapters_from_run(tmp_path / "exp1" / "checkpoint-final")


def test_same_base_model_by_path_copy_and_hub_cache(models: dict, tmp_path: Path) -> None:
    copy_dir = tmp_path / "copy-of-base"
    shutil.copytree(models["base"], copy_dir)
    assert same_base_model(str(models["base"]), str(copy_dir))  # identical content elsewhere
    assert not same_base_model(str(models["other"]), str(models["base"]))  # same shapes, other weights
    assert same_base_model("Qwen/Qwen2.5-0.5B", str(tmp_path / "hub/models--Qwen--Qwen2.5-0.5B/snapshots/abc"))
    assert same_base_model("/elsewhere/Qwen2.5-0.5B", "/models/Qwen2.5-0.5B")  # trained on another machine


def test_duplicate_names_are_refused(models: dict, adapters: dict) -> None:
    with pytest.raises(AdapterError, match="used twice"):
        validate_adapters([("a", adapters["good"]), ("a", adapters["rank20"])], str(models["base"]))


# -- --watch bookkeeping ------------------------------------------------------------------------------------------


def test_tracker_waits_for_settled_folders_and_keeps_newest(adapters: dict, tmp_path: Path) -> None:
    run = tmp_path / "watched"
    run.mkdir()
    tracker = CheckpointTracker(run, keep=2)
    for step in (1, 2, 3):
        shutil.copytree(adapters["good"], run / f"checkpoint-{step}")
    assert tracker.ready(tracker.scan()) == ([], [])  # first sight: maybe still being written
    to_load, skipped = tracker.ready(tracker.scan())
    assert [c.step for c in to_load] == [2, 3] and [c.step for c in skipped] == [1]
    versions = {c.path: v for c, v in tracker.scan()}
    for checkpoint in skipped:
        tracker.record(checkpoint, versions[checkpoint.path], None)
    for checkpoint in to_load:
        tracker.record(checkpoint, versions[checkpoint.path], tracker.unique_name(checkpoint))
    assert [a.name for a in tracker.loaded] == ["watched-step2", "watched-step3"]
    assert tracker.ready(tracker.scan()) == ([], [])  # nothing new, twice: nothing pending either
    assert tracker.ready(tracker.scan()) == ([], []) and not tracker.pending


def test_tracker_never_reuses_a_name_and_drops_stale_versions(adapters: dict, tmp_path: Path) -> None:
    run = tmp_path / "watched"
    folder = run / "checkpoint-5"
    shutil.copytree(adapters["good"], folder)
    tracker = CheckpointTracker(run, keep=3)
    tracker.ready(tracker.scan())
    (first,), _ = tracker.ready(tracker.scan())
    tracker.record(first, dict((c.path, v) for c, v in tracker.scan())[first.path], tracker.unique_name(first))
    # The checkpoint is rewritten (training restarted): same folder, new weights.
    time.sleep(0.01)
    shutil.copy(adapters["rank20"] / "adapter_model.safetensors", folder / "adapter_model.safetensors")
    tracker.ready(tracker.scan())
    (again,), _ = tracker.ready(tracker.scan())
    name = tracker.unique_name(again)
    assert name == "watched-step5-r2"
    tracker.record(again, dict((c.path, v) for c, v in tracker.scan())[again.path], name)
    assert [a.name for a in tracker.to_unload()] == ["watched-step5"]  # the stale version goes
    shutil.rmtree(folder)
    assert {a.name for a in tracker.to_unload()} == {"watched-step5", "watched-step5-r2"}


# -- lora-eval's input parsing and report -----------------------------------------------------------------------


def test_parse_rewards_errors_name_the_problem() -> None:
    with pytest.raises(EvalError, match=r"--rewards 'xml_integer:heavy': weight 'heavy' is not a number"):
        parse_rewards("xml_integer:heavy")
    with pytest.raises(EvalError, match="not valid JSON"):
        parse_rewards("[{]")


def test_dataset_file_rows_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "eval.jsonl"
    rows = [
        {"prompt": "What is 2+2?", "answer": "4"},
        {"prompt": [{"role": "user", "content": "6*7?"}], "answer": "42"},
        {"question": "3*3?", "answer": 9},
    ]
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = dataset_examples(good, system="Answer briefly.")
    assert examples[0]["prompt"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert examples[1]["prompt"] == [{"role": "user", "content": "6*7?"}]
    assert examples[2]["answer"] == 9 and examples[2]["prompt"][-1]["content"] == "3*3?"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "answer": "1"}\n{"answer": "2"}\n')
    with pytest.raises(EvalError, match=r"bad.jsonl row 2: no 'prompt' \(or 'question'\) column"):
        dataset_examples(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "ok"}\n{not json\n')
    with pytest.raises(EvalError, match="line 2: not valid JSON"):
        dataset_examples(broken)


def test_report_table_and_png(tmp_path: Path) -> None:
    from PIL import Image

    records = [
        {"model": "base", "scores": {"fmt": 0.0, "acc": None}, "total": 0.0},
        {"model": "base", "scores": {"fmt": 1.0, "acc": 0.0}, "total": 1.0},
        {"model": "tuned", "scores": {"fmt": 1.0, "acc": 1.0}, "total": 3.0},
        {"model": "tuned", "error": "HTTP 500"},
    ]
    summary = summarize(records, ["fmt", "acc"], {"fmt": 1.0, "acc": 2.0})
    table = markdown_table(summary)
    assert table.splitlines()[0] == "| model | fmt | acc (×2) | total (weighted) | n |"
    assert "| base | 0.500 ± 0.500 | 0.000 ± 0.000 | 0.500 ± 0.500 | 2 |" in table
    assert "| tuned | 1.000 ± 0.000 | 1.000 ± 0.000 | 3.000 ± 0.000 | 1 |" in table
    paths = write_report(summary, tmp_path / "out")
    with Image.open(paths["png"]) as image:
        image.verify()
    with Image.open(paths["png"]) as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    saved = json.loads(paths["json"].read_text())
    assert saved["cells"]["base"]["acc"] == {"mean": 0.0, "std": 0.0, "count": 1, "nan": 1}


def test_tracker_skips_folders_already_served_statically(adapters: dict, tmp_path: Path) -> None:
    run = (tmp_path / "same-run").resolve()
    shutil.copytree(adapters["good"], run / "checkpoint-1")
    tracker = CheckpointTracker(run, keep=2, taken={"same-run-step1"})
    shutil.copytree(adapters["good"], run / "checkpoint-0")
    # lora-serve --from-run DIR --latest --watch DIR: step 1 is served, step 0 is old news.
    tracker.start([(run / "checkpoint-1").resolve()])
    tracker.ready(tracker.scan())
    assert tracker.ready(tracker.scan()) == ([], [])
    shutil.copytree(adapters["good"], run / "checkpoint-2")
    tracker.ready(tracker.scan())
    assert [c.step for c in tracker.ready(tracker.scan())[0]] == [2]


def test_tracker_on_a_fresh_folder_loads_the_newest_present(adapters: dict, tmp_path: Path) -> None:
    run = (tmp_path / "other-run").resolve()
    for step in (1, 2, 3):
        shutil.copytree(adapters["good"], run / f"checkpoint-{step}")
    tracker = CheckpointTracker(run, keep=2)
    tracker.start([adapters["good"]])  # static adapters from elsewhere
    tracker.ready(tracker.scan())
    to_load, skipped = tracker.ready(tracker.scan())
    assert [c.step for c in to_load] == [2, 3] and [c.step for c in skipped] == [1]
