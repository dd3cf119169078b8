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

from reward_server.registry import REGISTRY, BatchResult

if TYPE_CHECKING:
    from reward_server.models.batcher import ModelWorker

ScoreAsync = Callable[..., Awaitable[BatchResult]]


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded (or a device that cannot be used); the message says why."""


@dataclass(frozen=True)
class BatchSettings:
    """How a model's batching worker gathers texts; every model gets the same settings.

    Example:
        >>> BatchSettings(max_batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: model_max_batch_size must be at least 1, got 0
    """

    #: Most texts gathered into one batch (across all concurrent requests).
    max_batch_size: int = 128
    #: Most padded tokens (texts × longest text) in one forward pass; a batch is split to fit.
    max_batch_tokens: int = 65536
    #: Longest a text waits for its batch to fill, in milliseconds.
    max_wait_ms: float = 5.0
    #: Most texts waiting for a batch; more get RESOURCE_EXHAUSTED instead of growing memory.
    max_queue: int = 16384
    #: Reference texts whose model output is kept (LRU); 0 turns the cache off.
    cache_size: int = 16384

    def __post_init__(self) -> None:
        for name, least in (("max_batch_size", 1), ("max_batch_tokens", 1), ("max_queue", 1), ("cache_size", 0)):
            value = getattr(self, name)
            if value < least:
                raise ValueError(f"model_{name} must be at least {least}, got {value}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"model_max_wait_ms must be >= 0, got {self.max_wait_ms}")

    @classmethod
    def from_config(cls, config: Any) -> BatchSettings:
        """The ``model_*`` settings of a :class:`~reward_server.config.ServerConfig`."""
        return cls(
            max_batch_size=config.model_max_batch_size,
            max_batch_tokens=config.model_max_batch_tokens,
            max_wait_ms=config.model_max_wait_ms,
            max_queue=config.model_max_queue,
            cache_size=config.model_cache_size,
        )


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
