"""``grpo-train``: GRPO training from a YAML recipe, every batch scored by the remote reward service.

    grpo-train --config configs/seed002_qwen2.5-1.5b_gsm8k.yaml --set training.max_steps=10

Order of work: recipe → reward service health and catalogue (rewards, params) → dataset → fields
the rewards read → model. A mistake anywhere before the model stops with a message naming it.
Multi-GPU / multi-node: ``accelerate launch -m trainer_client.train --config ...`` (each rank scores
its own shard through its own client).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from trainer_client.data import load_examples
from trainer_client.errors import InputError, PreflightError, RecipeError, RewardServiceError
from trainer_client.preflight import check_fields, make_client, preflight
from trainer_client.recipes import Recipe, load_recipe
from trainer_client.trl_adapter import remote_reward_funcs

log = logging.getLogger("trainer_client.train")


def grpo_config(recipe: Recipe) -> Any:
    """TRL's GRPOConfig from ``recipe.training``, with ``reward_weights`` from the rewards' weights."""
    from trl import GRPOConfig

    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    for key in recipe.training:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RecipeError(f"training.{key}: not a GRPOConfig field{hint}")
    kwargs = dict(recipe.training)
    kwargs["reward_weights"] = [r.weight for r in recipe.rewards]
    model = recipe.model
    init = {"dtype": model.dtype, "trust_remote_code": model.trust_remote_code}
    if model.attn_implementation:
        init["attn_implementation"] = model.attn_implementation
    if model.revision:
        init["revision"] = model.revision
    kwargs["model_init_kwargs"] = {**init, **(kwargs.get("model_init_kwargs") or {})}
    try:
        return GRPOConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        raise RecipeError(f"training: GRPOConfig refused the settings: {exc}") from exc


def lora_config(recipe: Recipe) -> Any:
    """peft.LoraConfig from ``recipe.lora`` (None when LoRA is off: full fine-tuning)."""
    if not recipe.lora.enabled:
        return None
    from peft import LoraConfig

    lora = recipe.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias=lora.bias,
        task_type="CAUSAL_LM",
    )


def quantization_config(recipe: Recipe) -> Any:
    """BitsAndBytesConfig for 4-bit QLoRA (NF4 by default), or None. Loading it needs CUDA + bitsandbytes."""
    if not recipe.lora.load_in_4bit:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    lora = recipe.lora
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=lora.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=lora.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=getattr(torch, lora.bnb_4bit_compute_dtype),
    )


def load_tokenizer(recipe: Recipe) -> Any:
    """The model's tokenizer, left-padded, with a pad token and the recipe's chat template if it sets one."""
    from transformers import AutoTokenizer

    model = recipe.model
    tokenizer = AutoTokenizer.from_pretrained(
        model.name_or_path,
        revision=model.revision,
        trust_remote_code=model.trust_remote_code,
        padding_side="left",
        truncation_side="left",
    )
    if recipe.prompt.chat_template:
        tokenizer.chat_template = recipe.prompt.chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise RecipeError(
            f"model {model.name_or_path}: the tokenizer has no chat template; set prompt.chat_template in the recipe"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_trainer(recipe: Recipe, examples: list[dict[str, Any]], reward_funcs: list, config: Any) -> Any:
    """A GRPOTrainer for the recipe: model by name/path (TRL loads it, per rank), LoRA/QLoRA, remote rewards."""
    from datasets import Dataset
    from trl import GRPOTrainer

    return GRPOTrainer(
        model=recipe.model.name_or_path,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=Dataset.from_list(examples),
        processing_class=load_tokenizer(recipe),
        peft_config=lora_config(recipe),
        quantization_config=quantization_config(recipe),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grpo-train",
        description="GRPO training (TRL) from a YAML recipe; rewards come from the remote reward service.",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="YAML recipe (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, e.g. --set training.max_steps=10 (value parsed as YAML; repeatable)",
    )
    parser.add_argument("--max-samples", type=int, help="keep the first N dataset examples (= dataset.max_samples)")
    parser.add_argument("--dry-run", action="store_true", help="check everything and build the trainer; no training")
    parser.add_argument("--log-level", default="INFO", help="log level of grpo-train's own messages")
    return parser


def run(recipe: Recipe, dry_run: bool = False) -> int:
    """Preflight, build, train; returns the process exit code."""
    config = grpo_config(recipe)  # bad training keys fail before anything is contacted or loaded
    client = make_client(recipe.reward_server)
    rewards = preflight(recipe, client)
    log.info(
        "reward service %s: %s",
        client.target,
        ", ".join(f"{name}→{info.name}" if name != info.name else name for name, info in rewards.items()),
    )
    examples = load_examples(recipe)
    check_fields(recipe, rewards, examples[0])  # the fields, now that the columns are known
    log.info("dataset %s: %d examples", recipe.dataset.path, len(examples))
    funcs = remote_reward_funcs(
        client,
        recipe.reward_specs(),
        on_error=recipe.reward_server.on_error,  # type: ignore[arg-type]
        on_reward_error=recipe.reward_server.on_reward_error,  # type: ignore[arg-type]
        record_to=recipe.reward_server.record_to,
    )
    trainer = build_trainer(recipe, examples, funcs, config)
    if dry_run:
        log.info("dry run: recipe, reward service, dataset, model and trainer are ready; not training")
        return 0
    trainer.train()
    trainer.save_model(config.output_dir)  # the final adapter, next to the checkpoint-N/ folders
    if trainer.accelerator.is_main_process:
        log.info("LoRA adapter saved to %s (and checkpoint-N/ below it)", config.output_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.max_samples is not None:
        overrides.append(f"dataset.max_samples={args.max_samples}")
    try:
        recipe = load_recipe(args.config, overrides)
        return run(recipe, dry_run=args.dry_run)
    except (RecipeError, InputError) as exc:
        print(f"grpo-train: {exc}", file=sys.stderr)
        return 2
    except PreflightError as exc:
        print(f"grpo-train: preflight failed: {exc}", file=sys.stderr)
        return 3
    except RewardServiceError as exc:
        print(f"grpo-train: training stopped, the reward service failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
