"""Model-backed rewards: rewards that run a model in the server process, on the server's device.

- :mod:`~reward_server.models.base`: the concept (:class:`ModelBackedReward`, batching settings).
- :mod:`~reward_server.models.loading`: loading a classifier (hub id or local directory) and a forward pass.
- :mod:`~reward_server.models.batcher`: one batching worker per model, across concurrent requests.
- :mod:`~reward_server.models.startup`: what the server does with them at start-up and shutdown.

Importing this package does not import torch or transformers (the ``models`` extra); only loading
a model does.
"""

from reward_server.models.base import (
    MODEL_REWARDS,
    BatchSettings,
    ModelBackedReward,
    ModelLoadError,
    register_model_reward,
)
from reward_server.models.stats import BatcherStats

__all__ = [
    "MODEL_REWARDS",
    "BatchSettings",
    "BatcherStats",
    "ModelBackedReward",
    "ModelLoadError",
    "register_model_reward",
]
