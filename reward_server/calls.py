"""What a Score call is made of, transport-free: the rewards asked for, the samples, the validated jobs, and each
reward's outcome with the weighted totals (the scoring engine, ``scoring``, works on these)."""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reward_server.outcomes import Note, NoteKind, count_outcomes
from reward_server.planning import Split, split_of
from reward_server.registry import ParamValue, Prompt, Reward
from reward_server.worker import Part


@dataclass(frozen=True)
class RewardCall:
    """One requested reward, as the caller sent it."""

    name: str
    weight: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


class Samples:
    """A request's samples as plain values: completions, fields, prompts and token ids.

    ``fields[i]`` maps sample i's field names to values: text, or JSON-typed values. The prompts
    (text or chat turns) and token ids are properties, so that a transport can build them only
    when a requested reward reads them (see ``transport.grpc_servicer.RequestSamples``).
    """

    def __init__(
        self,
        completions: list[str],
        fields: Sequence[Mapping[str, Any]] | None = None,
        prompts: Sequence[Prompt] | None = None,
        completion_ids: Sequence[Sequence[int] | None] | None = None,
    ) -> None:
        self.completions = completions
        self.fields = fields if fields is not None else [{} for _ in completions]
        self._prompts = prompts
        self._completion_ids = completion_ids

    def __len__(self) -> int:
        return len(self.completions)

    @property
    def prompts(self) -> Sequence[Prompt]:
        """Per sample: the prompt as text (a standard dataset) or chat turns (a conversational one)."""
        return self._prompts if self._prompts is not None else [""] * len(self.completions)

    @property
    def completion_ids(self) -> Sequence[Sequence[int] | None]:
        """Per sample: the completion's token ids, or None where the caller sent none."""
        return self._completion_ids if self._completion_ids is not None else [None] * len(self.completions)


@dataclass(frozen=True)
class Job:
    """A validated reward call: the reward, its full params and its weight.

    The scorer reuses the jobs of a list of reward specs it has validated before (one-sample calls repeat the same
    specs), so what follows from the job alone is worked out once per job (the cached properties).
    """

    reward: Reward
    params: dict[str, ParamValue]
    weight: float

    @functools.cached_property
    def fields(self) -> list[str]:
        """The sample fields the reward reads with these params."""
        return self.reward.fields_read(self.params)

    @functools.cached_property
    def split(self) -> Split:
        """How its work may be cut across worker tasks."""
        return split_of(self.reward, self.params)

    @functools.cached_property
    def part(self) -> Part:
        """The job over every sample of a worker task."""
        return Part(self.reward.name, self.params)

    @functools.cached_property
    def share(self) -> Hashable | None:
        """What must match for requests to run this job as one task (``coalescing.share_key``); None: never.

        A per-sample reward may be shared (a sample's score depends on that sample alone), but not a TRL function,
        which sees the batch.
        """
        reward = self.reward
        if reward.split != "sample" or reward.one_prompt_shape:
            return None
        key = (reward.name, tuple(self.params.items()))
        try:
            hash(key)
        except TypeError:  # a param value that cannot be compared cheaply
            return None
        return key


@dataclass
class RewardOutcome:
    """One reward's scores for the batch."""

    name: str
    weight: float
    scores: list[float]
    notes: dict[int, Note]
    elapsed_ms: float
    #: Extra text columns (name → one value per sample), see ``BatchResult.extras``.
    extras: dict[str, list[str]] = field(default_factory=dict)

    @functools.cached_property
    def counts(self) -> dict[str, int]:
        """How many samples scored and how many ended in each :class:`NoteKind` (``OutcomeCounts``); counted once,
        when the outcome is complete (the metrics and the response both read it).

        Example:
            >>> RewardOutcome("a", 1.0, [1.0, 0.5], {}, 0.0).counts
            {'scored': 2, 'not_applicable': 0, 'reward_error': 0, 'time_limit': 0, 'unavailable': 0}
        """
        scores = self.scores
        if not self.notes and not any(map(math.isnan, scores)):  # the common case, without counting kinds
            return {"scored": len(scores), **_NO_KINDS}
        return count_outcomes(scores, self.notes)


_NO_KINDS = {kind.label: 0 for kind in NoteKind}


def weighted_total(outcomes: Sequence[RewardOutcome], n_samples: int) -> list[float]:
    """Per sample: sum of weight × score over rewards, skipping NaN; NaN when every score is NaN.

    Example:
        >>> a = RewardOutcome("a", 2.0, [1.0, math.nan], {}, 0.0)
        >>> b = RewardOutcome("b", 1.0, [0.5, math.nan], {}, 0.0)
        >>> weighted_total([a, b], 2)
        [2.5, nan]
    """
    totals = []
    for i in range(n_samples):
        parts = [o.weight * o.scores[i] for o in outcomes if not math.isnan(o.scores[i])]
        totals.append(math.fsum(parts) if parts else math.nan)
    return totals
