"""Rewards declared with the reward server's own decorators, as the built-ins are.

``reward-server --rewards-from examples/decorated_rewards.py`` (or ``--rewards-from my_team.rewards`` for an
installed module) serves them under their declared names and aliases, with typed params listed by
ListRewards, fields declared up front and per-sample time budgets; ``@sample_reward`` rewards are split
across workers sample by sample.
"""

from __future__ import annotations

from reward_server import BatchResult, SampleScore, batch_reward, sample_reward


@sample_reward("ends_with_answer", alias="ends_with_answer_reward_func", reference_field="answer")
def ends_with_answer(completion: str, reference: str, *, value: float = 1.0) -> float | SampleScore:
    """value when the completion's last line is the sample's reference answer.

    Args:
        value: the score of a completion that ends with the answer.

    Example:
        >>> ends_with_answer("so...\\n42", "42")
        1.0
    """
    if not completion.strip():
        return SampleScore(None, note="empty completion")
    return value if completion.strip().splitlines()[-1].strip() == reference.strip() else 0.0


@batch_reward("distinct_completions")
def distinct_completions(completions: list[str], *, weight: float = 1.0) -> BatchResult:
    """weight × the share of the batch's completions that are distinct (a reward of the whole batch).

    Example:
        >>> distinct_completions(["a", "a", "b", "c"]).scores
        [0.75, 0.75, 0.75, 0.75]
    """
    share = len(set(completions)) / len(completions) if completions else 0.0
    return BatchResult([weight * share] * len(completions))
