"""verifiers: a Rubric group reward function backed by the reward service.

Follows verifiers 0.1.14 (PyPI; the same code is ``verifiers.legacy.rubrics.rubric`` in 0.3.1, and 0.4.0 has no
Rubric): ``Rubric._is_group_func`` treats a function with plural parameters (``prompts``, ``completions``,
``answers``, ``states``, ``infos``, ``tasks``) as a group function; ``Rubric.score_group`` awaits it once per group
with ``**group_score_objects(states)`` (it takes ``**kwargs``), adds ``score * weight`` to each state's
``reward``, records the score under ``func.__name__`` in ``state["metrics"]`` and sets
``advantage = reward - mean(group rewards)``.

Usage::

    rubric = vf.Rubric(funcs=[RemoteGroupReward(rewards=["xml_correctness", "xml_strict_format"])])

**A failed sample** returns ``failure_score`` (default 0.0): the Rubric adds it into the group's rewards and
advantages, where a NaN would make every advantage of the group NaN. Each state records what happened under
``state["reward_service"]`` (``failed``, every reward's score, the failed rewards' kind and reason), and the client
logs a WARNING. A call that fails as a whole raises; verifiers' Rubric then logs the error and scores the group 0.0
(its own behaviour for a group function that raises).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trainer_client.integrations.scorer import json_fields, scorer_for
from trainer_client.integrations.settings import Settings


class RemoteGroupReward:
    """A verifiers group reward function: ``(prompts, completions, answers, states, infos, **kwargs) -> totals``.

    Args:
        target, rewards, label_field, token, deadline_s, failure_score, window_s, max_batch: see
            :mod:`trainer_client.integrations.settings` (environment variables fill what is not given).
            ``answers`` go to ``label_field``; each ``info`` dict's JSON entries travel as fields.
        name: the name verifiers logs the total under (default ``reward_service``).

    Example:
        >>> import asyncio, pickle
        >>> fn = RemoteGroupReward(target="127.0.0.1:1", rewards=["xml_correctness"])
        >>> fn.__name__, asyncio.run(fn(prompts=[], completions=[], answers=[]))
        ('reward_service', [])
        >>> pickle.loads(pickle.dumps(fn)).settings == fn.settings
        True
    """

    def __init__(self, *, name: str = "reward_service", **settings: Any) -> None:
        self.settings = Settings.resolve(**settings)
        self.__name__ = name

    async def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        answers: Sequence[Any] | None = None,
        states: Sequence[dict[str, Any]] | None = None,
        infos: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if not completions:
            return []
        scorer = scorer_for(self.settings)
        n = len(completions)
        answers = list(answers) if answers is not None else [None] * n
        infos = list(infos) if infos is not None else [{}] * n
        samples = [
            scorer.sample(
                c, prompt=p, label=a, fields=json_fields(i, "info") if isinstance(i, Mapping) else {}, index=k
            )
            for k, (p, c, a, i) in enumerate(zip(prompts, completions, answers, infos, strict=True))
        ]
        results = await scorer.score(samples)
        for state, result in zip(states or [], results, strict=False):
            state["reward_service"] = {
                "failed": result.failed,
                "scores": result.scores,
                "failures": {name: {"kind": o.kind.value, "reason": o.reason} for name, o in result.failures.items()},
            }
        return [r.total for r in results]
