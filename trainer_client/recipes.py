"""Training recipes: one YAML file (model, dataset, prompt, rewards, reward server, LoRA, GRPOConfig fields).

``load_recipe(path, ["training.max_steps=3", ...])`` reads the file, applies ``--set`` overrides
(``dotted.key=value``, the value parsed as YAML) and checks every section, naming the key that is wrong.
``training`` holds GRPOConfig fields; they are checked against TRL's GRPOConfig when it is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainer_client.errors import RecipeError


@dataclass
class ModelSection:
    """The policy model."""

    #: Hub id or local directory.
    name_or_path: str
    #: Weights dtype: "bfloat16", "float16", "float32" or "auto".
    dtype: str = "bfloat16"
    trust_remote_code: bool = False
    #: e.g. "sdpa", "flash_attention_2"; None lets transformers choose.
    attn_implementation: str | None = None
    revision: str | None = None


@dataclass
class DatasetSection:
    """Where the prompts and references come from."""

    #: Hub dataset id, or a local .jsonl/.json/.csv file.
    path: str
    #: Hub dataset config (e.g. "main" for GSM8K).
    name: str | None = None
    split: str = "train"
    #: "gsm8k" (answer after ####), "openr1", "generic", or "auto" (guessed from the path).
    format: str = "auto"
    #: Example column → source column, e.g. {question: problem}; merged over the format's defaults (null drops one).
    columns: dict[str, str | None] = field(default_factory=dict)
    #: Keep the first N examples (None: all).
    max_samples: int | None = None


@dataclass
class PromptSection:
    """How an example becomes chat messages: an optional system prompt (the output format) and a user turn."""

    system: str = ""
    #: Python format string over the example's columns.
    user_template: str = "{question}"
    #: Optional Jinja chat template replacing the tokenizer's (e.g. for base models without one).
    chat_template: str | None = None


@dataclass
class RewardItem:
    """One reward to apply: name or alias, its weight (TRL's reward_weights) and params."""

    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)

    def as_spec(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "params": dict(self.params)}


@dataclass
class RewardServerSection:
    """How to reach the reward service."""

    #: host:port, ipv4:h:p,h:p (round robin) or dns:///name:port.
    target: str = "127.0.0.1:50051"
    #: Per-call deadline, retries included.
    deadline_s: float = 120.0
    #: Attempts on UNAVAILABLE (gRPC caps it at 5).
    max_attempts: int = 5
    #: Environment variable holding the bearer token (read at start; never write the token in a recipe).
    token_env: str = "REWARD_SERVICE_TOKEN"
    #: False, True (system roots) or a path to a PEM root CA.
    tls: bool | str = False
    #: PEM client certificate and key, for a service that requires mTLS.
    client_cert: str | None = None
    client_key: str | None = None
    #: "raise" fails the step after the retries; "none" skips the batch (TRL gives it no advantage).
    on_error: str = "raise"
    #: A reward whose code raised on the server: "raise" fails the step (as in-process); "warn" scores it None.
    on_reward_error: str = "raise"
    #: Append every scored batch (samples, scores, round trip) to this JSONL file (per rank: {rank} or .rankN).
    record_to: str | None = None


@dataclass
class LoraSection:
    """LoRA (or 4-bit QLoRA) adapter settings, passed to peft.LoraConfig / BitsAndBytesConfig."""

    enabled: bool = True
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    bias: str = "none"
    #: QLoRA: load the base model in 4 bit (needs a CUDA GPU and bitsandbytes).
    load_in_4bit: bool = False
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: str = "bfloat16"


@dataclass
class Recipe:
    """A complete training recipe."""

    model: ModelSection
    dataset: DatasetSection
    rewards: list[RewardItem]
    #: GRPOConfig fields (output_dir, max_steps, learning_rate, num_generations, ...).
    training: dict[str, Any]
    prompt: PromptSection = field(default_factory=PromptSection)
    reward_server: RewardServerSection = field(default_factory=RewardServerSection)
    lora: LoraSection = field(default_factory=LoraSection)
    #: Free text: where the recipe comes from.
    description: str = ""
    #: The file it was read from (not a YAML key).
    source: str = field(default="", metadata={"internal": True})

    def reward_specs(self) -> list[dict[str, Any]]:
        """The rewards as RewardClient specs."""
        return [r.as_spec() for r in self.rewards]


# -- Overrides ----------------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` → (["a", "b"], value parsed as YAML).

    Example:
        >>> parse_override("training.max_steps=3")
        (['training', 'max_steps'], 3)
        >>> parse_override("lora.target_modules=[q_proj, v_proj]")
        (['lora', 'target_modules'], ['q_proj', 'v_proj'])
        >>> parse_override("model.name_or_path=/tmp/tiny")
        (['model', 'name_or_path'], '/tmp/tiny')
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise RecipeError(f"--set {text!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise RecipeError(f"--set {text!r}: value is not valid YAML: {exc}") from exc
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set ``data[k1][k2]... = value``; list items by index or, for rewards, by name.

    Example:
        >>> d = {"rewards": [{"name": "xml_integer"}], "training": {}}
        >>> apply_override(d, ["rewards", "xml_integer", "weight"], 2.0)
        >>> apply_override(d, ["training", "max_steps"], 3)
        >>> d
        {'rewards': [{'name': 'xml_integer', 'weight': 2.0}], 'training': {'max_steps': 3}}
    """
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            index = _list_index(node, key, where)
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise RecipeError(f"--set {'.'.join(keys)}: {'.'.join(keys[:depth])} is not a mapping")
        if last:
            node[key] = value
        else:
            if node.get(key) is None:  # a missing (or empty) section
                node[key] = {}
            node = node[key]


def _list_index(items: list, key: str, where: str) -> int:
    if key.lstrip("-").isdigit():
        index = int(key)
        if not -len(items) <= index < len(items):
            raise RecipeError(f"--set {where}: index out of range (the list has {len(items)} items)")
        return index
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    if key in names:
        return names.index(key)
    raise RecipeError(f"--set {where}: no item named {key!r}; have {[n for n in names if n]}")


# -- Building and checking ----------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked (and ints widened to float) against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _check_value(value, option, where)
            except RecipeError:
                pass  # try the next option; the error below names the whole union
        raise RecipeError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(tp)
            return [_check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            _, item = typing.get_args(tp)
            return {str(k): _check_value(v, item, f"{where}.{k}") for k, v in value.items()}
    elif tp is Any:
        return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise RecipeError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _build(cls: type, data: Any, where: str) -> Any:
    """A section dataclass from a mapping: unknown keys (with a suggestion), missing keys and types are checked."""
    if not isinstance(data, Mapping):
        raise RecipeError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RecipeError(f"{where}.{key}: unknown key{hint}; known: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecipeError(f"{where}.{name}: required key is missing")
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, data[name] or {}, f"{where}.{name}")
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            if not isinstance(data[name], list):
                raise RecipeError(f"{where}.{name}: expected a list, got {data[name]!r}")
            item_cls = typing.get_args(tp)[0]
            values[name] = [
                _build(item_cls, {"name": item} if isinstance(item, str) else item, f"{where}.{name}[{i}]")
                for i, item in enumerate(data[name])
            ]
        else:
            values[name] = _check_value(data[name], tp, f"{where}.{name}")
    return cls(**values)


CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("bfloat16", "float16", "float32", "auto"),
    "dataset.format": ("auto", "gsm8k", "openr1", "generic"),
    "reward_server.on_error": ("raise", "none"),
    "reward_server.on_reward_error": ("raise", "warn"),
    "lora.bnb_4bit_quant_type": ("nf4", "fp4"),
    "lora.bnb_4bit_compute_dtype": ("bfloat16", "float16", "float32"),
}


def validate(recipe: Recipe) -> Recipe:
    """Checks across keys that the types alone do not catch; returns the recipe."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(recipe, section), name)
        if value not in allowed:
            raise RecipeError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    for key in ("model.name_or_path", "dataset.path", "reward_server.target"):
        section, name = key.split(".")
        if not str(getattr(getattr(recipe, section), name)).strip():
            raise RecipeError(f"{key}: must not be empty")
    if not recipe.rewards:
        raise RecipeError("rewards: name at least one reward")
    names = [r.name for r in recipe.rewards]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RecipeError(f"rewards: {duplicates} listed twice (TRL logs each reward by its name)")
    for key in ("output_dir", "max_steps"):
        if key not in recipe.training:
            raise RecipeError(f"training.{key}: required key is missing")
    steps = recipe.training["max_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps == 0 or steps < -1:
        raise RecipeError(f"training.max_steps: expected a positive integer (or -1 for epochs), got {steps!r}")
    if "reward_weights" in recipe.training:
        raise RecipeError("training.reward_weights: set each reward's weight under rewards[i].weight instead")
    if recipe.dataset.max_samples is not None and recipe.dataset.max_samples < 1:
        raise RecipeError(f"dataset.max_samples: expected a positive integer, got {recipe.dataset.max_samples}")
    if recipe.lora.load_in_4bit and not recipe.lora.enabled:
        raise RecipeError("lora.load_in_4bit: 4-bit QLoRA trains an adapter; set lora.enabled=true")
    return recipe


def recipe_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Recipe:
    """Build and validate a recipe from a plain mapping (what the YAML file holds)."""
    recipe = _build(Recipe, data, "recipe")
    recipe.source = source
    return validate(recipe)


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read a YAML recipe, apply ``dotted.key=value`` overrides (as ``grpo-train --set``), check it.

    Raises:
        RecipeError: naming the file, key or override that is wrong.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path}: expected a mapping of sections, got {type(data).__name__}")
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    try:
        return recipe_from_dict(data, str(path))
    except RecipeError as exc:
        raise RecipeError(f"recipe {path}: {exc}") from exc
