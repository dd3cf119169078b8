"""German sentiment match (seed 001): placeholder until a model is configured."""

from __future__ import annotations

from reward_server.errors import FailedPrecondition
from reward_server.registry import REGISTRY, batch_reward

HOW_TO_ENABLE = "sentiment_match needs a sentiment model, which this server does not load"


@batch_reward("sentiment_match", alias="sentiment_match_reward_func", requires_model=True, reference_field="answer")
def sentiment_match(
    completions: list[str], references: list[str], *, value: float = 1.0, soft: bool = False
) -> list[float]:
    """``value`` if the completion's sentiment label equals the reference's (German BERT classifier).

    Args:
        reference_field: sample field holding the reference answer.
        value: score for a matching label.
        soft: score value × the probability of the reference's label instead of 0/value.
    """
    raise FailedPrecondition(HOW_TO_ENABLE)


REGISTRY.disable("sentiment_match", HOW_TO_ENABLE)
