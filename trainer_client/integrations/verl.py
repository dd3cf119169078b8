"""verl: ``custom_reward_function`` backed by the reward service.

Follows verl at ``b178a3cd56f58b2d502255daba591e92833930a7`` (2026-01-29):

- ``verl/trainer/ppo/reward.py::get_custom_reward_fn`` loads ``custom_reward_function.name`` from
  ``custom_reward_function.path`` (``pkg://trainer_client.integrations.verl`` imports this module) and passes
  ``custom_reward_function.reward_kwargs`` as keyword arguments on every call (they win over verl's own);
- ``verl/experimental/reward_loop/reward_loop.py::RewardLoopWorker.compute_score_batch`` runs one task per
  sample under ``asyncio.gather``; ``reward_manager/naive.py::NaiveRewardManager.run_single`` awaits an async
  ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`` and keeps ``result["score"]`` as the
  reward and every key of the dict as ``reward_extra_info``; ``RewardLoopManager.compute_rm_score`` takes the
  extra keys from the first sample, so every sample must return the same keys;
- ``verl/workers/reward_manager/batch.py::BatchRewardManager.verify`` calls a synchronous
  ``compute_score(data_sources=, solution_strs=, ground_truths=, extra_infos=, **reward_kwargs)`` once per batch.

**A failed sample** (a note of kind REWARD_ERROR, TIME_LIMIT or UNAVAILABLE) returns ``failed: True`` and its
``score`` is ``failure_score`` (default 0.0), never NaN: verl writes ``score`` into a float32 reward tensor at the
response's last token, and ``core_algos.compute_grpo_outcome_advantage`` takes each group's mean and std of those;
one NaN makes every advantage of its group NaN and the loss NaN, and verl's reward path has no per-sample mask.
The flag lands in ``reward_extra_info`` (so ``failed`` averages to the failure rate in validation metrics and is in
the dumped generations), the per-reward keys carry the reward's own NaN, and the client logs a WARNING with the
count and the server's reason. A call that fails as a whole (service unreachable after retries) raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trainer_client.integrations.scorer import SampleResult, json_fields, scorer_for
from trainer_client.integrations.settings import Settings

#: Keys of every result besides the reward names.
RESERVED = ("score", "failed")


def _scorer(kwargs: Mapping[str, Any]):
    settings = {
        k: kwargs.get(k)
        for k in ("target", "rewards", "label_field", "token", "deadline_s", "failure_score", "window_s", "max_batch")
    }
    return scorer_for(Settings.resolve(reserved=RESERVED, **settings))


def _sample(scorer, data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any, index: int = 0):
    fields = json_fields(extra_info, "extra_info") if isinstance(extra_info, Mapping) else {}
    fields["data_source"] = data_source
    return scorer.sample(solution_str, label=ground_truth, fields=fields, index=index)


def as_verl(result: SampleResult) -> dict[str, Any]:
    """One sample's result in verl's shape: ``score``, every reward's score, ``failed``.

    Example:
        >>> as_verl(SampleResult(1.5, {"xml_correctness": 2.0, "xml_integer": -0.5}))
        {'score': 1.5, 'xml_correctness': 2.0, 'xml_integer': -0.5, 'failed': False}
    """
    return {"score": result.total, **result.scores, "failed": result.failed}


async def compute_score(
    data_source: Any, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """One sample's rewards for verl's reward loop; concurrent calls share one Score call.

    ``ground_truth`` goes to the field ``label_field`` (default ``answer``); ``extra_info`` entries and
    ``data_source`` travel as fields too. Keyword arguments (verl's ``reward_kwargs``): ``target``, ``rewards``,
    ``label_field``, ``token``, ``deadline_s``, ``failure_score``, ``window_s``, ``max_batch``; anything else verl
    passes (``reward_router_address``, ...) is ignored.

    Example:
        >>> import inspect
        >>> inspect.iscoroutinefunction(compute_score)  # verl's NaiveRewardManager awaits it
        True
    """
    scorer = _scorer(kwargs)
    sample = _sample(scorer, data_source, solution_str, ground_truth, extra_info)
    (result,) = await scorer.score([sample])
    return as_verl(result)


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """A whole batch for verl's ``reward_manager.name=batch`` (synchronous, as ``BatchRewardManager`` calls it).

    Example:
        >>> compute_score_batch([], [], [], [], target="127.0.0.1:1", rewards=["xml_integer"])
        []
    """
    scorer = _scorer(kwargs)
    extras = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    rows = zip(data_sources, solution_strs, ground_truths, extras, strict=True)
    samples = [_sample(scorer, d, s, g, e, i) for i, (d, s, g, e) in enumerate(rows)]
    if not samples:
        return []
    return [as_verl(r) for r in scorer.score_now(samples)]
