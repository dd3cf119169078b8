"""gRPC reward service for GRPO training: scores LLM completions with named reward functions.

The public API for writing rewards (plugins included) is re-exported here, imported on first use
so that ``import reward_server`` stays cheap: ``from reward_server import sample_reward, batch_reward``.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("grpo-rewards")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"

#: Public name → the module that defines it.
_PUBLIC = {
    "sample_reward": "reward_server.declare",
    "batch_reward": "reward_server.declare",
    "Batch": "reward_server.registry",
    "BatchResult": "reward_server.registry",
    "SampleScore": "reward_server.registry",
    "splittable": "reward_server.trl_functions",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'reward_server' has no attribute {name!r}")
