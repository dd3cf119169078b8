"""German sentiment match (seed 001): does a completion's sentiment match its reference answer's?

A model-backed reward: the classifier (default ``oliverguhr/german-sentiment-bert``, labels
positive, negative, neutral) is loaded once by the server (``--enable-sentiment``, or naming the
model with ``--sentiment-model``; device by ``--device``) and runs on the server's device, batched across all
concurrent requests by the model's worker (:mod:`reward_server.models.batcher`). Reference labels
are cached, so a reference is classified once per server lifetime, not once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from reward_server.declare import batch_reward
from reward_server.errors import FailedPrecondition
from reward_server.models.base import ModelBackedReward, ScoreAsync, register_model_reward
from reward_server.models.batcher import ModelWorker
from reward_server.models.loading import probabilities
from reward_server.registry import Batch, BatchResult


@batch_reward("sentiment_match", alias="sentiment_match_reward_func", requires_model=True, reference_field="answer")
def sentiment_match(
    completions: list[str], references: list[str], *, value: float = 1.0, soft: bool = False
) -> list[float]:
    """``value`` if the completion's sentiment label equals its reference's (German BERT classifier), else 0.

    A text's label is the model's most probable label, named by the model's own ``id2label``;
    texts longer than the model's limit (512 tokens) are truncated to it, as the seed did. Every
    sample is compared with its own reference (the seed used the first answer for the whole batch).
    With ``soft`` the score is ``value`` × the probability the model gives the reference's label
    for the completion (softmax, as the transformers pipeline reports it): a smoother signal.
    The server binds the model at start-up (see :func:`match_scores` for the arithmetic); this
    placeholder only runs when it did not, and says which flag enables the reward.

    Args:
        reference_field: sample field holding the reference answer whose sentiment should be matched.
        value: score for a matching label (the maximum with soft).
        soft: score value × the probability of the reference's label instead of 0 or value.
    """
    raise FailedPrecondition(SENTIMENT.how_to_enable)


def _argmax(probs: Sequence[float]) -> int:
    # The first of equal maxima, as numpy's argmax in the transformers pipeline picks.
    return max(range(len(probs)), key=probs.__getitem__)


def match_scores(
    labels: Sequence[str],
    completion_probs: Sequence[Sequence[float]],
    reference_probs: Sequence[Sequence[float]],
    *,
    value: float,
    soft: bool,
) -> list[float]:
    """Per sample: ``value`` × (label match, or the completion's probability of the reference's label).

    Example:
        >>> labels = ("positive", "negative", "neutral")
        >>> completions = [(0.7, 0.2, 0.1), (0.1, 0.3, 0.6)]
        >>> references = [(0.5, 0.4, 0.1), (0.2, 0.5, 0.3)]
        >>> match_scores(labels, completions, references, value=2.0, soft=False)
        [2.0, 0.0]
        >>> match_scores(labels, completions, references, value=2.0, soft=True)
        [1.4, 0.6]
    """
    scores = []
    for completion, reference in zip(completion_probs, reference_probs, strict=True):
        wanted = _argmax(reference)
        if soft:
            scores.append(value * completion[wanted])
        else:
            scores.append(value if labels[_argmax(completion)] == labels[wanted] else 0.0)
    return scores


def bind(worker: ModelWorker) -> ScoreAsync:
    """The model-backed ``score_async`` of sentiment_match, on top of the model's batching worker."""

    async def score(batch: Batch, *, reference_field: str, value: float, soft: bool) -> BatchResult:
        # Completions and (uncached) references go to the worker together, so they share batches.
        references = batch.columns["reference_field"]
        completion_logits, reference_logits = await worker.predict(batch.completions, references)
        multi = worker.classifier.multi_label
        completion_probs = [probabilities(logits, multi) for logits in completion_logits]
        reference_probs = [probabilities(logits, multi) for logits in reference_logits]
        return BatchResult(match_scores(worker.labels, completion_probs, reference_probs, value=value, soft=soft))

    return score


SENTIMENT = register_model_reward(
    ModelBackedReward(
        reward="sentiment_match",
        enable_setting="enable_sentiment",
        enable_flag="--enable-sentiment",
        model_setting="sentiment_model",
        model_flag="--sentiment-model",
        default_model="oliverguhr/german-sentiment-bert",
        bind=bind,
    )
)
