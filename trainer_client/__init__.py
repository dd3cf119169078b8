"""Client side of the reward service: RewardClient, the TRL adapter, grpo-train and reward-score.

``RewardClient`` and ``remote_reward_funcs`` import only gRPC and protobuf; ``grpo-train`` needs the ``train``
extra (TRL, PEFT, transformers, datasets, accelerate, torch).
"""

from trainer_client.catalogue import Catalogue
from trainer_client.client import RetryPolicy, RewardClient
from trainer_client.convert import RewardInfo, RewardScores, ScoreResult
from trainer_client.errors import InputError, PreflightError, RecipeError, RemoteRewardError, RewardServiceError
from trainer_client.outcomes import Outcome, OutcomeCounts, SampleOutcome
from trainer_client.trl_adapter import remote_reward_funcs

__all__ = [
    "Catalogue",
    "InputError",
    "Outcome",
    "OutcomeCounts",
    "PreflightError",
    "RecipeError",
    "RemoteRewardError",
    "RetryPolicy",
    "RewardClient",
    "RewardInfo",
    "RewardScores",
    "RewardServiceError",
    "SampleOutcome",
    "ScoreResult",
    "remote_reward_funcs",
]
