"""slime: ``--custom-rm-path trainer_client.integrations.slime.custom_rm`` (per sample or, with ``--group-rm``, per
group: the same function takes either).

Follows slime at ``624b824a898ab0ec1fcb4d373004c7f3852bf515`` (2026-08-21): ``slime/rollout/rm_hub/__init__.py``
``async_rm`` awaits ``load_function(args.custom_rm_path)(args, sample)`` for one ``Sample``, and
``batched_async_rm`` awaits ``rm_function(args, samples)`` with the whole list when ``--group-rm`` is set
(``rollout/sglang_rollout.py::generate_and_rm_group``). A ``Sample`` carries ``prompt`` (text or chat messages),
``response``, ``label`` and ``metadata``; ``sample.reward`` may be a number or a dict, from which slime reads
``args.reward_key`` (``Sample.get_reward_value``). Settings come from the environment
(:mod:`trainer_client.integrations.settings`); ``SlimeReward(target=..., rewards=[...])`` is the same with keyword
arguments, for a ``--custom-rm-path`` of your own module.

The answer is the weighted total; when ``--reward-key`` (or ``--eval-reward-key``) is set, a dict with the total
under that key, every reward's score, and ``failed``.

**A failed sample** carries ``failure_score`` (default 0.0; the reward enters slime's group normalisation, which
cannot take NaN) and gets ``sample.remove_sample = True``: slime zeroes its loss mask
(``ray/rollout.py``), so it trains on nothing from it, though the value still counts in its group's mean. A call
that fails as a whole raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trainer_client.integrations.scorer import SampleResult, json_fields, scorer_for
from trainer_client.integrations.settings import Settings

RESERVED = ("failed",)


class SlimeReward:
    """``async (args, sample_or_samples)`` for slime's ``--custom-rm-path``; picklable, connecting on first call.

    Args:
        target, rewards, label_field, token, deadline_s, failure_score, window_s, max_batch: see
            :mod:`trainer_client.integrations.settings` (environment variables fill what is not given).
        remove_failed: set ``remove_sample`` on a failed sample (default True).

    Example:
        >>> import asyncio, types
        >>> rm = SlimeReward(target="127.0.0.1:1", rewards=["xml_correctness"])
        >>> asyncio.run(rm(types.SimpleNamespace(reward_key=None), []))
        []
    """

    def __init__(self, *, remove_failed: bool = True, **settings: Any) -> None:
        self.settings = Settings.resolve(reserved=RESERVED, **settings)
        self.remove_failed = remove_failed

    async def __call__(self, args: Any, sample: Any, **kwargs: Any) -> Any:
        group = isinstance(sample, Sequence)
        samples = list(sample) if group else [sample]
        if not samples:
            return []
        scorer = scorer_for(self.settings)
        dicts = [
            scorer.sample(s.response, prompt=s.prompt, label=s.label, fields=_metadata(s), index=i)
            for i, s in enumerate(samples)
        ]
        results = await scorer.score(dicts)
        keys = [k for k in (getattr(args, "reward_key", None), getattr(args, "eval_reward_key", None)) if k]
        out = []
        for s, result in zip(samples, results, strict=True):
            if result.failed and self.remove_failed:
                s.remove_sample = True
            out.append(_answer(result, keys))
        return out if group else out[0]


def _metadata(sample: Any) -> dict[str, Any]:
    metadata = getattr(sample, "metadata", None)
    return json_fields(metadata, "metadata") if isinstance(metadata, Mapping) else {}


def _answer(result: SampleResult, keys: list[str]) -> float | dict[str, Any]:
    """The total, or (with ``--reward-key``) a dict with the total under each key slime reads.

    Example:
        >>> _answer(SampleResult(1.5, {"a": 1.5}), [])
        1.5
        >>> _answer(SampleResult(1.5, {"a": 1.5}), ["score"])
        {'a': 1.5, 'failed': False, 'score': 1.5}
    """
    if not keys:
        return result.total
    return {**result.scores, "failed": result.failed, **dict.fromkeys(keys, result.total)}


_default: SlimeReward | None = None


async def custom_rm(args: Any, sample: Any, **kwargs: Any) -> Any:
    """slime's custom reward function: one ``Sample`` → its reward; a list (``--group-rm``) → a list of rewards.
    Configured from the environment on first call (see :class:`SlimeReward`)."""
    global _default
    if _default is None:
        _default = SlimeReward()
    return await _default(args, sample, **kwargs)


#: The group form under its own name (``custom_rm`` takes a list as well).
group_rm = custom_rm
