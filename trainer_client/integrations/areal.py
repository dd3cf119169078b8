"""AReaL: ``reward_fn="trainer_client.integrations.areal.reward_fn"`` (or an :class:`AReaLReward` instance).

Follows AReaL at ``4aef98d8d818af55b43621aaadba047ae10f4e77`` (2026-05-21): ``areal/workflow/rlvr.py``
``RLVRWorkflow`` imports a string ``reward_fn`` with ``areal.utils.dynamic_import.import_from_string`` and wraps it in
``areal/api/reward_api.py::AsyncRewardWrapper``, which runs
``reward_fn(prompt_str, completions_str, input_tokens, output_tokens, **task_data)`` in a shared
``ProcessPoolExecutor`` (the function and its arguments are pickled) under ``asyncio.wait_for(timeout=15 s)``. The
float it returns becomes ``torch.tensor(reward)``. The completion is ``tokenizer.decode(output_tokens)`` with its
special tokens, so trailing end-of-turn tokens are cut (``special_tokens``). ``task_data`` (the dataset row) travels
as sample fields; ``label_field`` names the column that is the label when it is not already called that
(``label_column``).

**A failed sample raises** :class:`RewardFailed` (``on_failure="raise"``, the default): ``AsyncRewardWrapper``
retries it up to 3 times (a transient failure may pass), then the exception leaves ``arun_episode`` and
``areal/infra/workflow_executor.py`` rejects the rollout (``status=failed``), with its whole group when it runs under
``GroupedRolloutWorkflow``; nothing is trained on a made-up reward. ``on_failure="score"`` returns ``failure_score``
instead. The deadline defaults to 10 s, below the wrapper's 15 s, because AReaL turns its own timeout into a
reward of 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from trainer_client.errors import RewardServiceError
from trainer_client.integrations.openrlhf import DEFAULT_SPECIAL_TOKENS, completion_of
from trainer_client.integrations.scorer import json_fields, scorer_for
from trainer_client.integrations.settings import Settings

#: Below AReaL's ``AsyncRewardWrapper(timeout_seconds=15)``, which returns 0 when it runs out.
DEFAULT_DEADLINE_S = 10.0


class RewardFailed(RuntimeError):
    """A sample's reward failed on the reward service (or the call did); plain text only, so it crosses AReaL's
    process pool (a ``RewardServiceError`` does not unpickle).

    Example:
        >>> import pickle
        >>> str(pickle.loads(pickle.dumps(RewardFailed("xml_correctness: unavailable: judge down"))))
        'xml_correctness: unavailable: judge down'
    """


class AReaLReward:
    """``reward_fn(prompt, completions, prompt_ids, completion_ids, **data) -> float`` for AReaL; picklable (it
    travels to AReaL's process pool with its settings only) and connecting in each process on first call.

    Args:
        target, rewards, label_field, token, deadline_s, failure_score, max_batch: see
            :mod:`trainer_client.integrations.settings` (environment variables fill what is not given).
        label_column: the dataset column copied to ``label_field`` (default: none; the row's columns keep their
            names, so a dataset with an ``answer`` column needs nothing).
        on_failure: ``"raise"`` (default; AReaL rejects the rollout) or ``"score"`` (return ``failure_score``).
        send_ids: send ``completion_ids`` with each sample (for rewards that read token ids).
        special_tokens: trailing tokens cut from each completion.

    Example:
        >>> import pickle
        >>> fn = AReaLReward(target="127.0.0.1:1", rewards=["xml_correctness"])
        >>> pickle.loads(pickle.dumps(fn)).settings.deadline_s
        10.0
    """

    def __init__(
        self,
        *,
        label_column: str | None = None,
        on_failure: Literal["raise", "score"] = "raise",
        send_ids: bool = True,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        **settings: Any,
    ) -> None:
        if on_failure not in ("raise", "score"):
            raise ValueError(f"on_failure must be 'raise' or 'score', got {on_failure!r}")
        self.settings = Settings.resolve(defaults={"deadline_s": DEFAULT_DEADLINE_S}, **settings)
        self.label_column = label_column
        self.on_failure = on_failure
        self.send_ids = send_ids
        self.special_tokens = tuple(special_tokens)

    def __call__(
        self,
        prompt: Any,
        completions: str,
        prompt_ids: Sequence[int] | None = None,
        completion_ids: Sequence[int] | None = None,
        **data: Any,
    ) -> float:
        scorer = scorer_for(self.settings)
        fields = json_fields(data, "data")
        label = data.get(self.label_column) if self.label_column else None
        completion = completions
        if isinstance(completions, str):
            completion = completion_of(completions, "", self.special_tokens)
        sample = scorer.sample(
            completion,
            prompt=prompt,
            label=label,
            fields=fields,
            completion_ids=completion_ids if self.send_ids else None,
        )
        try:
            (result,) = scorer.score_now([sample])
        except RewardServiceError as exc:
            raise RewardFailed(str(exc)) from None
        if result.failed and self.on_failure == "raise":
            raise RewardFailed("; ".join(f"{name}: {o.kind.value}: {o.reason}" for name, o in result.failures.items()))
        return result.total


_default: AReaLReward | None = None


def reward_fn(
    prompt: Any,
    completions: str,
    prompt_ids: Sequence[int] | None = None,
    completion_ids: Sequence[int] | None = None,
    **data: Any,
) -> float:
    """AReaL's ``reward_fn``, configured from the environment of the pool process on first call (see
    :class:`AReaLReward`)."""
    global _default
    if _default is None:
        _default = AReaLReward()
    return _default(prompt, completions, prompt_ids, completion_ids, **data)
