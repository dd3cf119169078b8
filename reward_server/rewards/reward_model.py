"""Reward models: any Hugging Face sequence classifier served as a reward, with TRL's semantics.

Each ``--reward-model NAME=ID_OR_DIR`` (or ``reward_models:`` entry) becomes a reward called NAME,
declared at start-up with :func:`declare` and bound to its model's batching worker with :func:`bind`
(the same machinery as the sentiment reward: :mod:`reward_server.models`).

What a sample scores is what TRL's ``GRPOTrainer`` computes for a reward model in-process
(``_calculate_rewards``): a conversational sample (chat turns) is the RM tokenizer's chat template
applied to the prompt turns plus the completion as an assistant turn; a plain sample (``prompt_text``)
is prompt + completion; tokens without added special tokens, padded on the right (with EOS when the
tokenizer has no pad token); the score is logit 0. Params choose another label, its probability,
a normalization and the truncation of long inputs (TRL itself never truncates).
"""

from __future__ import annotations

from collections.abc import Sequence

from reward_server.declare import batch_reward, registering_into
from reward_server.errors import FailedPrecondition, InvalidArgument
from reward_server.models.base import ScoreAsync
from reward_server.models.batcher import ModelWorker
from reward_server.models.loading import probabilities
from reward_server.registry import Batch, BatchResult, Prompt, Registry

OUTPUTS = ("logit", "probability")
SIDES = ("right", "left")


def declare(name: str, registry: Registry) -> None:
    """Register reward ``name`` (its params and docs) into ``registry``; :func:`bind` gives it its model."""

    def reward_model(
        completions: list[str],
        *,
        prompts: Sequence[Prompt] = (),
        label: str = "",
        output: str = "logit",
        normalize: bool = False,
        mean: float = 0.0,
        std: float = 1.0,
        max_length: int = 0,
        truncation_side: str = "right",
    ) -> list[float]:
        """A reward model's score of prompt + completion: logit 0, as TRL's GRPOTrainer computes it in-process.

        Args:
            label: the label whose output is the score: a name from the model's id2label or an index; "" = label 0.
            output: logit (TRL's score), or probability (softmax over the labels; sigmoid for a one-label model).
            normalize: score (s - mean) / std (OpenRLHF's normalized rewards).
            mean: subtracted from the score with normalize.
            std: the score is divided by it with normalize (> 0).
            max_length: longest input in tokens, 0 = the model's limit on this server (TRL never truncates).
            truncation_side: right or left: which end of a longer input is cut off.
        """
        raise FailedPrecondition(f"reward model {name} is declared but its model is not loaded")

    with registering_into(registry):
        batch_reward(name, requires_model=True, reads=("prompts",))(reward_model)


def texts_for(prompts: Sequence[Prompt], completions: Sequence[str], chat_template: object, model_id: str) -> list[str]:
    """The texts TRL tokenizes: chat template over prompt turns + the completion as an assistant turn, or
    prompt text + completion. ``chat_template`` is the tokenizer's ``apply_chat_template`` (None: it has none).

    Example:
        >>> def template(messages, tokenize):
        ...     return "".join(f"<{m['role']}>{m['content']}" for m in messages)
        >>> texts_for(["2+2=", [{"role": "user", "content": "2+2?"}], []], ["4", "4", "4"], template, "rm")
        ['2+2=4', '<user>2+2?<assistant>4', '4']
    """
    texts = []
    for i, (prompt, completion) in enumerate(zip(prompts or [""] * len(completions), completions, strict=True)):
        if isinstance(prompt, str) or not prompt:  # no prompt at all: the completion alone
            texts.append((prompt or "") + completion)
            continue
        if chat_template is None:
            raise InvalidArgument(
                f"samples[{i}] has chat turns, but the tokenizer of reward model {model_id} has no chat template; "
                "send the prompt as prompt_text"
            )
        messages = [*prompt, {"role": "assistant", "content": completion}]
        try:
            texts.append(chat_template(messages, tokenize=False))
        except Exception as exc:  # a template refusing the turns (jinja raise_exception), and the like
            raise InvalidArgument(f"samples[{i}]: the chat template of {model_id} refused the turns: {exc}") from exc
    return texts


def scores_of(
    logits: Sequence[Sequence[float]],
    index: int,
    *,
    output: str,
    multi_label: bool,
    normalize: bool,
    mean: float,
    std: float,
) -> list[float]:
    """Per sample: label ``index``'s logit or probability, normalized when asked.

    Example:
        >>> scores_of([(2.0, 0.0), (0.0, 0.0)], 0, output="logit", multi_label=False, normalize=True, mean=1.0, std=2.0)
        [0.5, -0.5]
        >>> scores_of([(0.0, 0.0)], 1, output="probability", multi_label=False, normalize=False, mean=0.0, std=1.0)
        [0.5]
    """
    out = []
    for row in logits:
        score = probabilities(row, multi_label)[index] if output == "probability" else row[index]
        out.append((score - mean) / std if normalize else float(score))
    return out


def bind(worker: ModelWorker) -> ScoreAsync:
    """The model-backed ``score_async`` of a reward model, on top of its batching worker."""
    classifier = worker.classifier
    labels = classifier.labels
    template = classifier.tokenizer.apply_chat_template if classifier.has_chat_template else None

    async def score(
        batch: Batch,
        *,
        label: str,
        output: str,
        normalize: bool,
        mean: float,
        std: float,
        max_length: int,
        truncation_side: str,
    ) -> BatchResult:
        index = _label_index(label, labels, classifier.model_id)
        if output not in OUTPUTS:
            raise InvalidArgument(f"param 'output' must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if truncation_side not in SIDES:
            raise InvalidArgument(f"param 'truncation_side' must be right or left, got {truncation_side!r}")
        if normalize and not std > 0:
            raise InvalidArgument(f"param 'std' must be > 0 to normalize, got {std}")
        if not 0 <= max_length <= classifier.max_length:
            raise InvalidArgument(
                f"param 'max_length' must be between 0 (the model's limit) and {classifier.max_length} "
                f"(reward model {classifier.model_id} on this server), got {max_length}"
            )
        # Chat templates are per-sample Python (jinja): rendered in a tokenizer thread, not on the event loop.
        texts = await worker.prepare(texts_for, batch.prompts, batch.completions, template, classifier.model_id)
        logits, _ = await worker.predict(texts, truncation=(max_length or classifier.max_length, truncation_side))
        return BatchResult(
            scores_of(
                logits,
                index,
                output=output,
                multi_label=classifier.multi_label,
                normalize=normalize,
                mean=mean,
                std=std,
            )
        )

    return score


def _label_index(label: str, labels: Sequence[str], model_id: str) -> int:
    """The index of ``label`` (a name or an index as text; "" = 0) among the model's labels."""
    if not label:
        return 0
    if label in labels:
        return labels.index(label)
    if label.isdigit() and int(label) < len(labels):
        return int(label)
    raise InvalidArgument(f"param 'label': {label!r} is not a label of {model_id}; its labels: {', '.join(labels)}")
