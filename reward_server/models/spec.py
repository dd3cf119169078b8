"""What the server is told about one reward model: ``--reward-model NAME=ID_OR_DIR`` or a ``reward_models:`` entry.

Plain data, no torch: the config loader builds these, and :mod:`reward_server.models.startup` loads them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reward_server.models.settings import BatchSettings

#: Precisions a model may run in; ``auto`` = float32 on a CPU, the checkpoint's half precision (or fp16) on a GPU.
DTYPES = ("auto", "float32", "float16", "bfloat16")
#: A reward model's name is a reward name: callers type it in their reward lists.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class RewardModelSpec:
    """One reward model to serve as the reward called :attr:`name`.

    Example:
        >>> RewardModelSpec.parse_flag("rm=./my-rm")
        RewardModelSpec(name='rm', model='./my-rm', revision='', device='', dtype='auto', max_length=0, \
max_batch_size=None, max_batch_tokens=None, max_wait_ms=None, max_queue=None)
        >>> RewardModelSpec.from_mapping("reward_models[0]", {"name": "rm", "model": "x", "dtype": "fp8"})
        Traceback (most recent call last):
        ...
        ValueError: reward_models[0].dtype must be one of auto, float32, float16, bfloat16, got 'fp8'
    """

    #: The reward's name in Score requests and ListRewards.
    name: str
    #: A Hugging Face hub id or a local directory.
    model: str
    #: Hub revision (branch, tag or commit); "" = the default branch (refused for a local directory).
    revision: str = ""
    #: cpu, cuda, cuda:N or auto; "" = the server's ``device`` setting.
    device: str = ""
    dtype: str = "auto"
    #: Longest input in tokens; 0 = the model's own limit (``max_position_embeddings``).
    max_length: int = 0
    #: Batching of this model's worker; None = the server's ``model_*`` setting.
    max_batch_size: int | None = None
    max_batch_tokens: int | None = None
    max_wait_ms: float | None = None
    max_queue: int | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"reward model name {self.name!r} must be letters, digits, '_', '.', '-' (not first)")
        if not self.model:
            raise ValueError(f"reward model {self.name}: model must name a hub id or a directory")
        if self.dtype not in DTYPES:
            raise ValueError(f"reward model {self.name}: dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.max_length < 0:
            raise ValueError(f"reward model {self.name}: max_length must be >= 0, got {self.max_length}")

    @classmethod
    def parse_flag(cls, text: str) -> RewardModelSpec:
        """``NAME=ID_OR_DIR``, the form of ``--reward-model``."""
        name, sep, model = text.partition("=")
        if not sep or not name or not model:
            raise ValueError(f"--reward-model takes NAME=ID_OR_DIR (e.g. rm=./my-rm), got {text!r}")
        return cls(name.strip(), model.strip())

    @classmethod
    def from_mapping(cls, where: str, mapping: Mapping[str, Any]) -> RewardModelSpec:
        """One ``reward_models:`` entry of a config file; errors name ``where`` and the key."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{where} must be a mapping (name, model, ...), got {mapping!r}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            if key not in known:
                raise ValueError(f"{where}: unknown key {key!r}; known: {', '.join(known)}")
            expected = _SCALAR[known[key].type]
            if value is None and "None" in known[key].type:
                values[key] = None
                continue
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ValueError(f"{where}.{key} must be {expected.__name__}, got {value!r}")
            values[key] = value
        for key in ("name", "model"):
            if key not in values:
                raise ValueError(f"{where} needs {key!r}")
        if values.get("dtype", "auto") not in DTYPES:
            raise ValueError(f"{where}.dtype must be one of {', '.join(DTYPES)}, got {values['dtype']!r}")
        return cls(**values)

    def batch_settings(self, defaults: BatchSettings) -> BatchSettings:
        """The server's batching settings with this model's own overrides."""
        own = {k: getattr(self, k) for k in ("max_batch_size", "max_batch_tokens", "max_wait_ms", "max_queue")}
        # A reward model has no reference texts: nothing to cache.
        return dataclasses.replace(defaults, cache_size=0, **{k: v for k, v in own.items() if v is not None})


#: Field type (as written, ``from __future__ import annotations``) → the Python type a YAML value must have.
_SCALAR = {"str": str, "int": int, "float": float, "int | None": int, "float | None": float}
