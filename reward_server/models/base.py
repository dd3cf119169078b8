"""Model-backed rewards as a server concept: how a reward names, enables and binds its model.

A reward module registers its reward as usual (``@batch_reward(..., requires_model=True)``) and
declares a :class:`ModelBackedReward` next to it. Until the server loads the model, the reward is
disabled with a reason naming the flag that enables it (FAILED_PRECONDITION for callers). At
start-up the server loads every enabled model once, starts one batching worker per model and
swaps in the reward's ``score_async`` (see :mod:`reward_server.models.startup`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reward_server.models.settings import BatchSettings, ModelLoadError
from reward_server.registry import REGISTRY, BatchResult

if TYPE_CHECKING:
    from reward_server.models.batcher import ModelWorker

ScoreAsync = Callable[..., Awaitable[BatchResult]]

__all__ = [
    "MODEL_REWARDS",
    "BatchSettings",
    "ModelBackedReward",
    "ModelLoadError",
    "ScoreAsync",
    "register_model_reward",
]


@dataclass(frozen=True)
class ModelBackedReward:
    """How the server enables, loads and binds the model behind one registered reward."""

    #: Canonical name of the registered reward.
    reward: str
    #: ServerConfig field (bool) that switches the reward on, and its command-line flag.
    enable_setting: str
    enable_flag: str
    #: ServerConfig field naming the model (hub id or local directory), and its flag.
    model_setting: str
    model_flag: str
    #: The model loaded when the reward is enabled without naming one.
    default_model: str
    #: Builds the reward's ``score_async`` on top of the model's batching worker.
    bind: Callable[[ModelWorker], ScoreAsync]

    @property
    def how_to_enable(self) -> str:
        return (
            f"start the server with {self.enable_flag} (config: {self.enable_setting}: true) to load its model "
            f"({self.default_model}), or name the model with {self.model_flag} (a Hugging Face id or a local "
            "directory), which enables it too"
        )

    def enabled(self, config: Any) -> bool:
        """On when asked for, or when its model is named (the enable setting left unset)."""
        value = getattr(config, self.enable_setting)
        return bool(value) if value is not None else getattr(config, self.model_setting) is not None

    def model_id(self, config: Any) -> str:
        return str(getattr(config, self.model_setting) or self.default_model)


#: Every model-backed reward, by reward name.
MODEL_REWARDS: dict[str, ModelBackedReward] = {}


def register_model_reward(spec: ModelBackedReward) -> ModelBackedReward:
    """Declare ``spec`` and disable its reward until a server loads the model."""
    if spec.reward in MODEL_REWARDS:
        raise ValueError(f"model-backed reward {spec.reward!r} declared twice")
    MODEL_REWARDS[spec.reward] = spec
    REGISTRY.disable(spec.reward, spec.how_to_enable)
    return spec
