"""OpenRLHF: ``--reward.remote_url /path/to/this/file.py`` scores over gRPC from the trainer.

Follows OpenRLHF at ``3c3be6234e0cb353e76bb8019947db9dfe99fca7`` (2026-08-13):
``openrlhf/utils/agent.py::SingleTurnAgentExecutor`` loads a ``remote_url`` ending in ``.py`` with
``importlib.util.spec_from_file_location`` and takes its ``reward_func``; ``_fetch_rewards_via_func`` calls
``reward_func([query], [prompt], [label])`` once per sample through ``asyncio.to_thread``, many at once. ``query``
is ``tokenizer.decode(prompt + response tokens, skip_special_tokens=False)``; the answer's ``rewards`` and
``scores`` become ``torch.tensor([value])`` and each ``extra_logs`` value ``value.flatten()[0].item()``
(``trainer/ppo_utils/samples_generator.py::_process_response_into_experience``), so one-element tensors are
returned, as OpenRLHF's own examples do. Older OpenRLHF (≤ 0.8) called it once per rollout batch: the same
function answers any number of samples.

This module is such a file itself, configured from the environment (``REWARD_SERVICE_TARGET``,
``REWARD_SERVICE_REWARDS``, ...; see :mod:`trainer_client.integrations.settings`); a file of your own can hold
``reward_func = OpenRLHFReward(target=..., rewards=[...])`` instead. Concurrent one-sample calls from OpenRLHF's
threads are coalesced into one Score call.

**A sample no reward applies to** (every note NOT_APPLICABLE) is no failure: its total is 0.0, as TRL's ``nansum``
gives it and as the server's ``/openrlhf`` route answers; so is ``scores`` when ``scores_reward`` does not apply.

**A failed sample**: ``rewards`` carries ``failure_score`` (default 0.0; OpenRLHF's advantage estimators cannot
take NaN), ``scores`` carries NaN and ``extra_logs["reward_failed"]`` is 1. With
``--algo.dynamic_filtering_enable``, OpenRLHF drops the sample's group and generates a replacement: its test
``min_r < avg_score < max_r`` is false for a NaN average (``samples_generator.py::_generate_vllm``). Without it the
NaN shows in the logged ``score`` metric. A call that fails as a whole raises; OpenRLHF then logs the error and
leaves that sample without a reward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from trainer_client.integrations.scorer import SampleResult, scorer_for
from trainer_client.integrations.settings import Settings

#: Trailing special tokens cut from a decoded query (chat templates' end-of-turn and end-of-text tokens).
DEFAULT_SPECIAL_TOKENS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end_of_text|>")


def completion_of(query: str, prompt: str, special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS) -> str:
    """The response inside OpenRLHF's ``query``: after the prompt when the query starts with it, without
    trailing special tokens (and the whitespace between them).

    Example:
        >>> completion_of("<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n4<|im_end|>\\n<|endoftext|>",
        ...               "<|im_start|>user\\n2+2?<|im_end|>\\n<|im_start|>assistant\\n")
        '4'
    """
    text = query[len(prompt) :] if prompt and query.startswith(prompt) else query
    stripped = True
    while stripped:
        stripped = False
        for token in special_tokens:
            trimmed = text.rstrip()
            if token and trimmed.endswith(token):
                text, stripped = trimmed[: -len(token)], True
    return text


class OpenRLHFReward:
    """``reward_func(queries, prompts, labels, **kwargs)`` for OpenRLHF, picklable, connecting on first call.

    Args:
        target, rewards, label_field, token, deadline_s, failure_score, window_s, max_batch: see
            :mod:`trainer_client.integrations.settings` (environment variables fill what is not given).
        scores_reward: the reward whose score goes to ``scores`` (OpenRLHF filters groups on it); default the
            total.
        special_tokens: trailing tokens cut from each completion.

    Example:
        >>> fn = OpenRLHFReward(target="127.0.0.1:1", rewards=["xml_correctness"], label_field="answer")
        >>> fn([], [], [])
        {'rewards': [], 'scores': [], 'extra_logs': {'xml_correctness': [], 'reward_failed': []}}
    """

    def __init__(
        self,
        *,
        scores_reward: str | None = None,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        **settings: Any,
    ) -> None:
        self.settings = Settings.resolve(reserved=("reward_failed",), **settings)
        if scores_reward is not None and scores_reward not in self.settings.names:
            raise ValueError(f"scores_reward {scores_reward!r} is not one of the rewards {self.settings.names}")
        self.scores_reward = scores_reward
        self.special_tokens = tuple(special_tokens)

    def __call__(self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any) -> dict:
        if not (len(queries) == len(prompts) == len(labels)):
            raise ValueError(
                f"queries, prompts and labels differ in length: {len(queries)}, {len(prompts)}, {len(labels)}"
            )
        if not queries:
            return _answer([], [], self.settings.names)
        scorer = scorer_for(self.settings)
        samples = [
            scorer.sample(completion_of(q, p, self.special_tokens), prompt=p, label=label, index=i)
            for i, (q, p, label) in enumerate(zip(queries, prompts, labels, strict=True))
        ]
        results = scorer.score_sync(samples)
        scores = [math.nan if r.failed else _scores_value(r, self.scores_reward) for r in results]
        return _answer(results, scores, self.settings.names)


def _scores_value(result: SampleResult, reward: str | None) -> float:
    """``scores`` of a sample that did not fail: the total, or ``reward``'s score, 0.0 where it does not apply (the
    ``/openrlhf`` route's value, TRL's ``nansum``: not applying is no failure, and a NaN would drop the group).

    Example:
        >>> _scores_value(SampleResult(0.5, {"a": math.nan, "b": 0.5}), "a"), _scores_value(SampleResult(0.5, {}), None)
        (0.0, 0.5)
    """
    if reward is None:
        return result.total
    score = result.scores[reward]
    return 0.0 if math.isnan(score) else score


def _answer(results: Sequence[SampleResult], scores: list[float], names: list[str]) -> dict[str, Any]:
    logs = {name: [r.scores[name] for r in results] for name in names}
    logs["reward_failed"] = [float(r.failed) for r in results]
    out = {"rewards": [r.total for r in results], "scores": scores, "extra_logs": logs}
    if not results:
        return out
    try:
        import torch  # OpenRLHF always has it; it turns a list into shape (1, 1), a tensor into (1,)
    except ImportError:
        return out
    return {
        "rewards": torch.tensor(out["rewards"], dtype=torch.float32),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "extra_logs": {k: torch.tensor(v, dtype=torch.float32) for k, v in logs.items()},
    }


_default: OpenRLHFReward | None = None


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any) -> dict:
    """OpenRLHF's ``reward_func``, configured from the environment on first call (see :class:`OpenRLHFReward`)."""
    global _default
    if _default is None:
        _default = OpenRLHFReward()
    return _default(queries, prompts, labels, **kwargs)
