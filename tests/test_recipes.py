"""Every recipe in configs/ loads, validates and builds a trainer (models swapped for a tiny one); recipe errors."""

from __future__ import annotations

import math

import pytest
from conftest import REPO, start_server, stop_server
from tiny_models import build_tiny_causal_lm, write_tiny_dataset

from trainer_client import RewardClient
from trainer_client.data import load_examples
from trainer_client.errors import PreflightError, RecipeError
from trainer_client.preflight import preflight
from trainer_client.recipes import load_recipe

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# What the issue asks of each seed's recipe.
EXPECTED = {
    "seed000": (
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
        {"xml_tag_count", "xml_soft_format", "xml_strict_format", "xml_integer", "xml_correctness"},
    ),
    "seed001": ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", {"tfidf_similarity", "sentiment_match"}),
    "seed002": (
        "Qwen/Qwen2.5-1.5B-Instruct",
        {"xml_tag_count", "xml_soft_format", "xml_strict_format", "xml_integer", "xml_correctness"},
    ),
    "seed003": (
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
        {"think_boxed_format", "boxed_accuracy", "solution_levenshtein"},
    ),
    "seed004": ("Qwen/Qwen3-4B-Base", {"format_exact", "format_approximate", "answer_check", "number_check"}),
    # Not a seed: open-r1's math setup (issue 12).
    "openr1_": (
        "Qwen/Qwen2.5-1.5B-Instruct",
        {"open_r1_accuracy", "open_r1_format", "open_r1_tag_count", "open_r1_length"},
    ),
    # Not a seed: open-r1's code setup (issue 16; trained one step in test_code_recipe.py).
    "code_op": ("Qwen/Qwen2.5-1.5B-Instruct", {"open_r1_code", "open_r1_code_format"}),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("recipes"), "--workers", "0")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"model": build_tiny_causal_lm(root / "tiny-qwen2"), "data": write_tiny_dataset(root / "data.jsonl")}


def tiny_overrides(tiny, target: str, out) -> list[str]:
    return [
        f"model.name_or_path={tiny['model']}",
        f"dataset.path={tiny['data']}",
        f"reward_server.target={target}",
        "training.use_cpu=true",
        f"training.output_dir={out}",
    ]


def test_there_is_one_recipe_per_seed() -> None:
    assert sorted(p.name[:7] for p in CONFIGS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name[:7])
def test_recipe_validates_and_builds_a_trainer(path, server, tiny, tmp_path) -> None:
    from trainer_client import train

    model_id, canonical = EXPECTED[path.name[:7]]
    original = load_recipe(path)
    assert original.model.name_or_path == model_id
    client = RewardClient(server.address)
    catalogue = {r.name: r for r in client.list_rewards()}
    found = {
        next(info.name for info in catalogue.values() if r.name in (info.name, *info.aliases)) for r in original.rewards
    }
    assert found == canonical

    recipe = load_recipe(path, tiny_overrides(tiny, server.address, tmp_path / "out"))
    examples = load_examples(recipe)
    assert len(examples) == 6 and examples[0]["prompt"][-1]["role"] == "user"
    assert examples[0]["prompt"][-1]["content"].startswith("What is 6 times 7?")
    assert (examples[0]["prompt"][0]["role"] == "system") == bool(recipe.prompt.system.strip())
    rendered = train.load_tokenizer(recipe).apply_chat_template(
        examples[0]["prompt"], tokenize=False, add_generation_prompt=True
    )
    assert "What is 6 times 7?" in rendered
    assert rendered.endswith("<start_working_out>" if recipe.prompt.chat_template else "assistant\n")
    config = train.grpo_config(recipe)
    assert config.max_steps == original.training["max_steps"]
    assert config.reward_weights == [r.weight for r in recipe.rewards]
    assert train.lora_config(recipe).r == original.lora.r

    unavailable = [r.name for r in recipe.rewards if not catalogue[_canonical(r.name, catalogue)].available]
    if unavailable:
        # A model-backed reward this server was not started with: preflight names it and says how to enable it.
        with pytest.raises(PreflightError, match=f"reward '{unavailable[0]}' is not enabled on this server"):
            preflight(recipe, client, examples[0])
        kept = [r.name for r in recipe.rewards if r.name not in unavailable]
        recipe = load_recipe(path, [*tiny_overrides(tiny, server.address, tmp_path / "out"), f"rewards={kept}"])
    preflight(recipe, client, examples[0])

    if recipe.lora.load_in_4bit:
        # 4-bit NF4 needs CUDA + bitsandbytes: the quantization config is checked here, the load runs as plain LoRA.
        quant = train.quantization_config(recipe)
        assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
        recipe = load_recipe(path, [*tiny_overrides(tiny, server.address, tmp_path / "out"), "lora.load_in_4bit=false"])
    assert train.run(recipe, dry_run=True) == 0


def _canonical(name: str, catalogue: dict) -> str:
    return next(info.name for info in catalogue.values() if name in (info.name, *info.aliases))


def test_seed_specifics() -> None:
    seed002 = load_recipe(REPO / "configs" / "seed002_qwen2.5-1.5b_gsm8k.yaml")
    assert (seed002.lora.r, seed002.lora.target_modules) == (8, ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert "<reasoning>" in seed002.prompt.system and "<answer>" in seed002.prompt.system
    seed000 = load_recipe(REPO / "configs" / "seed000_r1-distill-qwen-14b_gsm8k_de.yaml")
    assert seed000.dataset.max_samples == 500 and "<Begründung>" in seed000.prompt.system
    assert all(r.params == {"reasoning_tag": "Begründung", "answer_tag": "Antwort"} for r in seed000.rewards)
    seed003 = load_recipe(REPO / "configs" / "seed003_r1-distill-qwen-1.5b_math_boxed.yaml")
    assert seed003.lora.load_in_4bit and (seed003.lora.r, seed003.lora.alpha) == (32, 32)
    assert "\\boxed{}" in seed003.prompt.user_template.format(question="x")
    seed001 = load_recipe(REPO / "configs" / "seed001_r1-distill-llama-8b_tourism_de.yaml")
    assert seed001.dataset.path.endswith(".jsonl")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["training.max_stepz=3"], "training.max_stepz: not a GRPOConfig field (did you mean 'max_steps'?)"),
        (["lora.alpah=4"], "recipe.lora.alpah: unknown key (did you mean 'alpha'?)"),
        (["lora.r=four"], "recipe.lora.r: expected int, got str 'four'"),
        (["model.dtype=fp8"], "model.dtype: 'fp8' is not one of"),
        (["rewards=[]"], "rewards: name at least one reward"),
        (["training.reward_weights=[1, 2]"], "set each reward's weight under rewards[i].weight"),
        (["rewards.no_such.weight=2"], "rewards.no_such: no item named 'no_such'"),
        (["training.max_steps"], "expected dotted.key=value"),
        (["training.max_steps=0"], "training.max_steps: expected a positive integer"),
    ],
)
def test_recipe_errors_name_the_key(overrides, message) -> None:
    from trainer_client import train

    with pytest.raises(RecipeError) as caught:
        train.grpo_config(load_recipe(REPO / "configs" / "seed002_qwen2.5-1.5b_gsm8k.yaml", overrides))
    assert message in str(caught.value)


def test_overrides_reach_lists_by_index_and_by_name() -> None:
    recipe = load_recipe(
        REPO / "configs" / "seed002_qwen2.5-1.5b_gsm8k.yaml",
        ["rewards.0.weight=0.5", "rewards.correctness_reward_func.params={value: 3}", "lora.target_modules=[q_proj]"],
    )
    assert recipe.rewards[0].weight == 0.5 and recipe.rewards[-1].params == {"value": 3}
    assert recipe.lora.target_modules == ["q_proj"]


def test_openr1_recipe_trains_through_the_service(server, tiny, tmp_path) -> None:
    import json

    from trainer_client import train

    out = tmp_path / "out"
    steps = [
        "model.dtype=float32",
        "training.bf16=false",
        "training.max_steps=1",
        "training.save_steps=1",
        "training.per_device_train_batch_size=4",
        "training.num_generations=4",
        "training.gradient_accumulation_steps=1",
        "training.max_completion_length=16",
    ]
    path = next(p for p in CONFIGS if p.name.startswith("openr1_"))
    recipe = load_recipe(path, [*tiny_overrides(tiny, server.address, out), *steps])
    assert train.run(recipe) == 0
    state = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())
    (logged,) = [entry for entry in state["log_history"] if "rewards/open_r1_length/mean" in entry]
    # TRL logged every reward of the recipe under its open-r1 name; the tiny model's text has no tags.
    for name in ("open_r1_accuracy", "open_r1_format", "open_r1_tag_count", "open_r1_length"):
        assert math.isfinite(logged[f"rewards/{name}/mean"]), name
    assert logged["rewards/open_r1_format/mean"] == 0.0
