"""Finding and validating PEFT LoRA adapters before vLLM sees them.

vLLM refuses many adapters only when it loads them (at startup, or at the first request), with an error deep
in its log. Every check vLLM would fail on, plus the ones it silently gets wrong (an adapter trained on another
base model), is done here first, so ``lora-serve`` can stop with one clear line per problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

#: The values vLLM accepts for ``--max-lora-rank`` (``vllm.config.lora.MaxLoRARanks``).
ALLOWED_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: Adapter weight files PEFT writes, in the order vLLM looks for them.
WEIGHT_FILES: tuple[str, ...] = ("adapter_model.safetensors", "adapter_model.bin")
#: A Trainer checkpoint folder: ``checkpoint-<global step>``.
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
#: ``init_lora_weights`` values that only set the initial adapter weights (vLLM's list); other strings
#: (PiSSA, OLoRA, LoftQ, ...) change the base weights, which vLLM cannot reproduce.
_PLAIN_INITS = {"gaussian", "eva", "orthogonal", "mica", "lora_ga"}
_FINGERPRINT_BYTES = 1 << 20


class AdapterError(ValueError):
    """One or more adapters cannot be served; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Adapter:
    """A validated adapter: the name it is served under, its absolute path and its largest rank."""

    name: str
    path: Path
    rank: int


@dataclass(frozen=True)
class Checkpoint:
    """A ``checkpoint-N`` folder of a training run."""

    step: int
    path: Path


def pick_max_lora_rank(ranks: Iterable[int]) -> int:
    """The smallest ``--max-lora-rank`` value vLLM accepts that fits every rank.

    Example:
        >>> pick_max_lora_rank([4, 16])
        16
        >>> pick_max_lora_rank([17])
        32
        >>> pick_max_lora_rank([300])
        320
    """
    largest = max(ranks, default=1)
    for allowed in ALLOWED_MAX_LORA_RANKS:
        if allowed >= largest:
            return allowed
    raise AdapterError([f"rank {largest} is above {ALLOWED_MAX_LORA_RANKS[-1]}, the largest rank vLLM can serve"])


def find_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """The ``checkpoint-N`` folders directly under ``run_dir``, oldest step first."""
    run = Path(run_dir)
    found = []
    for child in run.iterdir() if run.is_dir() else ():
        match = CHECKPOINT_RE.match(child.name)
        if match and child.is_dir():
            found.append(Checkpoint(int(match.group(1)), child.resolve()))
    return sorted(found, key=lambda c: c.step)


def checkpoint_name(run_dir: str | Path, step: int) -> str:
    """The served name of a run's checkpoint: ``<run>-step<N>``.

    Example:
        >>> checkpoint_name("/runs/gsm8k-qwen", 500)
        'gsm8k-qwen-step500'
    """
    return f"{Path(run_dir).resolve().name}-step{step}"


def adapters_from_run(run_dir: str | Path, *, latest: bool = False) -> list[tuple[str, Path]]:
    """``(name, path)`` for each checkpoint of a training output directory (only the newest with ``latest``).

    A run directory without checkpoint folders that is itself an adapter (the final ``save_model``) is served
    under the run's name.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise AdapterError([f"--from-run {run_dir}: not a directory"])
    checkpoints = find_checkpoints(run)
    if checkpoints:
        chosen = checkpoints[-1:] if latest else checkpoints
        return [(checkpoint_name(run, c.step), c.path) for c in chosen]
    if (run / "adapter_config.json").is_file():
        return [(run.resolve().name, run.resolve())]
    raise AdapterError([f"--from-run {run_dir}: no checkpoint-N folders and no adapter_config.json in it"])


def parse_adapter_arg(text: str) -> tuple[str, str]:
    """Split an ``--adapter NAME=PATH`` value.

    Example:
        >>> parse_adapter_arg("sft=./out/checkpoint-20")
        ('sft', './out/checkpoint-20')
    """
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise AdapterError([f"--adapter {text!r}: expected NAME=PATH"])
    return name.strip(), path.strip()


def adapter_rank(config: Mapping[str, Any]) -> int:
    """The largest rank in an adapter config (``r`` and every ``rank_pattern`` override).

    Example:
        >>> adapter_rank({"r": 8, "rank_pattern": {"q_proj": 64}})
        64
    """
    ranks = [int(config.get("r") or 0), *(int(v) for v in (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """What in an ``adapter_config.json`` vLLM cannot serve (empty when it can).

    Example:
        >>> for problem in config_problems({"peft_type": "LORA", "r": 8, "use_dora": True, "bias": "all"}):
        ...     print(problem)
        uses DoRA (use_dora: true), which vLLM does not support; train with use_dora=False
        has bias='all'; vLLM serves only bias='none'
    """
    problems = []
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        problems.append(f"peft_type is {peft_type!r}, not 'LORA'; vLLM serves only LoRA adapters")
        return problems
    rank = adapter_rank(config)
    if rank <= 0:
        problems.append(f"rank r={config.get('r')!r} is not a positive integer")
    elif rank > ALLOWED_MAX_LORA_RANKS[-1]:
        problems.append(f"rank {rank} is above {ALLOWED_MAX_LORA_RANKS[-1]}, the largest --max-lora-rank vLLM accepts")
    if config.get("use_dora"):
        problems.append("uses DoRA (use_dora: true), which vLLM does not support; train with use_dora=False")
    if config.get("modules_to_save"):
        problems.append(
            f"has modules_to_save={list(config['modules_to_save'])}: fully trained modules vLLM cannot load; "
            "train without modules_to_save"
        )
    if config.get("bias", "none") != "none":
        problems.append(f"has bias={config.get('bias')!r}; vLLM serves only bias='none'")
    if config.get("lora_bias"):
        problems.append("has lora_bias: true, which vLLM does not support")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in _PLAIN_INITS:
        problems.append(f"init_lora_weights={init!r} changes the base weights, which vLLM cannot reproduce")
    if config.get("layer_replication"):
        problems.append("uses layer_replication, which vLLM does not support")
    return problems


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape, read from a safetensors header only (no tensor data, no torch)."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return {name: meta["shape"] for name, meta in header.items() if name != "__metadata__"}


def _base_weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / name for name in names]
    single = model_dir / "model.safetensors"
    return [single] if single.is_file() else []


def base_model_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Weight name → shape of a local safetensors model (empty when it has none)."""
    shapes: dict[str, list[int]] = {}
    for file in _base_weight_files(model_dir):
        shapes.update(_safetensors_shapes(file))
    return shapes


def shape_problems(adapter_weights: Path, base_shapes: Mapping[str, list[int]]) -> list[str]:
    """Where the adapter's LoRA matrices do not fit the base model's weights.

    ``lora_A`` of a module is ``[r, in_features]`` and ``lora_B`` is ``[out_features, r]``; the base weight of
    the same module is ``[out_features, in_features]``.
    """
    mismatched, missing, checked = [], [], 0
    for key, shape in _safetensors_shapes(adapter_weights).items():
        match = re.match(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", key)
        if not match:
            continue
        module, which = match.groups()
        base = base_shapes.get(f"{module}.weight")
        if base is None:
            missing.append(module)
            continue
        checked += 1
        fits = shape[1] == base[1] if which == "A" else shape[0] == base[0]
        if len(base) != 2 or not fits:
            mismatched.append(f"{module}.lora_{which} {shape} vs base {base}")
    problems = []
    if mismatched:
        problems.append(f"LoRA shapes do not fit the base model: {'; '.join(mismatched[:3])}")
    if missing and not checked:
        problems.append(f"targets modules the base model does not have (e.g. {missing[0]})")
    return problems


def looks_like_path(text: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else (``./x``, ``/x``, ``a/b/c``) is a path."""
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text)


def _fingerprint(model_dir: Path) -> str | None:
    """A cheap identity of a local model: config.json plus size, head and tail of every weight file."""
    config = model_dir / "config.json"
    files = _base_weight_files(model_dir)
    if not config.is_file() or not files:
        return None
    digest = hashlib.sha256(config.read_bytes())
    for file in files:
        size = file.stat().st_size
        digest.update(str(size).encode())
        with file.open("rb") as handle:
            digest.update(handle.read(_FINGERPRINT_BYTES))
            handle.seek(max(0, size - _FINGERPRINT_BYTES))
            digest.update(handle.read())
    return digest.hexdigest()


@dataclass(frozen=True)
class ServedModel:
    """The base model being served, with what the checks read from its files, read once and only when needed.

    Validating several adapters, or every checkpoint ``--watch`` finds, against one ``ServedModel`` reads the
    model's weight headers and fingerprint once, not once per adapter.
    """

    #: As vLLM gets it: a local folder or a hub id.
    name: str

    @classmethod
    def of(cls, model: str | ServedModel) -> ServedModel:
        return model if isinstance(model, ServedModel) else cls(model)

    @property
    def folder(self) -> Path:
        return Path(self.name).expanduser()

    @cached_property
    def shapes(self) -> dict[str, list[int]]:
        return base_model_shapes(self.folder)

    @cached_property
    def fingerprint(self) -> str | None:
        return _fingerprint(self.folder.resolve())


def same_base_model(declared: str, served: str | ServedModel) -> bool:
    """Whether an adapter's ``base_model_name_or_path`` names the model being served.

    Local paths compare by real path, or by content when one is a copy of the other; a hub id matches a local
    folder with the same final name (``--local-dir``) or the hub cache folder ``models--org--name``.

    Example:
        >>> same_base_model("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct")
        True
        >>> same_base_model("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B")
        False
        >>> same_base_model("Qwen/Qwen2.5-0.5B", "/models/hub/models--Qwen--Qwen2.5-0.5B/snapshots/abc")
        True
    """
    model = ServedModel.of(served)
    served = model.name
    if declared == served:
        return True
    declared_path, served_path = Path(declared).expanduser(), model.folder
    declared_local, served_local = declared_path.exists(), served_path.exists()
    if declared_local and served_local:
        if declared_path.resolve() == served_path.resolve():
            return True
        fingerprint = model.fingerprint
        return fingerprint is not None and fingerprint == _fingerprint(declared_path.resolve())
    if looks_like_path(declared) and looks_like_path(served):
        # Trained on another machine: only the folder names can be compared.
        return not declared_local and declared_path.name == served_path.name
    hub_id, local = (declared, served) if not looks_like_path(declared) else (served, declared)
    cache_folder = "models--" + hub_id.replace("/", "--")
    parts = Path(local).expanduser().resolve().parts if looks_like_path(local) or Path(local).exists() else ()
    return cache_folder in parts or (bool(parts) and parts[-1] == hub_id.rsplit("/", 1)[-1])


def validate_adapter(
    name: str, path: str | Path, base_model: str | ServedModel, *, allow_base_mismatch: bool = False
) -> Adapter:
    """Check that vLLM can serve the adapter at ``path`` on ``base_model``; raise :class:`AdapterError` if not.

    ``path`` is resolved against the working directory (vLLM would take a relative path for a hub id). Pass a
    :class:`ServedModel` when validating several adapters, so the base model's files are read once.
    """
    served = ServedModel.of(base_model)
    where = f"adapter {name!r} ({path})"
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise AdapterError([f"{where}: no such directory (resolved to {folder.resolve()})"])
    folder = folder.resolve()
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError([f"{where}: missing adapter_config.json; is this a PEFT adapter folder?"])
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AdapterError([f"{where}: adapter_config.json is not valid JSON: {exc}"]) from exc
    if not isinstance(config, dict):
        raise AdapterError([f"{where}: adapter_config.json is not a JSON object"])
    problems = config_problems(config)
    weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        problems.append(f"missing adapter weights ({' or '.join(WEIGHT_FILES)})")
    declared = config.get("base_model_name_or_path") or None
    if declared and not allow_base_mismatch and not same_base_model(declared, served):
        problems.append(
            f"was trained on base model {declared!r} (adapter_config.json base_model_name_or_path), "
            f"not the served {served.name!r}; pass --allow-base-mismatch if they are the same model"
        )
    safetensors = weights is not None and weights.suffix == ".safetensors"
    if safetensors and served.folder.is_dir() and not problems and served.shapes:
        problems.extend(shape_problems(weights, served.shapes))
    if problems:
        raise AdapterError([f"{where}: {problem}" for problem in problems])
    return Adapter(name=name, path=folder, rank=adapter_rank(config))


def validate_adapters(
    specs: Sequence[tuple[str, str | Path]], base_model: str, *, allow_base_mismatch: bool = False
) -> list[Adapter]:
    """Validate every ``(name, path)``; raise one :class:`AdapterError` listing the problems of all of them."""
    served = ServedModel(base_model)
    problems: list[str] = []
    adapters: list[Adapter] = []
    seen: set[str] = set()
    for name, path in specs:
        if name in seen:
            problems.append(f"adapter name {name!r} is used twice; every served name must be unique")
            continue
        seen.add(name)
        try:
            adapters.append(validate_adapter(name, path, served, allow_base_mismatch=allow_base_mismatch))
        except AdapterError as exc:
            problems.extend(exc.problems)
    if problems:
        raise AdapterError(problems)
    return adapters
