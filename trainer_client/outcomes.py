"""What each sample's score means on the client side: scored, or why it is NaN (``reward.v1.NoteKind``).

A NaN that means "does not apply" (TRL's None) and one that means "the reward's code is broken" or "what it
depends on is down" must not look the same to a trainer or a script. The server says which in every note;
these are the plain-Python forms the client hands out, without importing the server package.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from reward.v1 import reward_pb2 as pb


class Outcome(enum.StrEnum):
    """One sample's outcome for one reward (the value is what logs and JSON show)."""

    #: A finite score.
    SCORED = "scored"
    #: The reward does not apply to this sample (its own None): part of the training signal, not a failure.
    NOT_APPLICABLE = "not_applicable"
    #: The reward's code raised or returned something that is not a score: a bug to fix.
    REWARD_ERROR = "reward_error"
    #: Over its time budget.
    TIME_LIMIT = "time_limit"
    #: Something the reward depends on failed (a model pass, a judge, a code engine, the sandbox).
    UNAVAILABLE = "unavailable"
    #: A note from a server older than NoteKind (its kind is not known).
    UNSPECIFIED = "unspecified"

    @property
    def failed(self) -> bool:
        """True for the kinds that say something went wrong (not "scored", not "does not apply").

        Example:
            >>> Outcome.REWARD_ERROR.failed, Outcome.NOT_APPLICABLE.failed
            (True, False)
        """
        return self in (Outcome.REWARD_ERROR, Outcome.TIME_LIMIT, Outcome.UNAVAILABLE)


#: ``reward.v1.NoteKind`` → :class:`Outcome`.
_OF_KIND = {
    pb.NOTE_KIND_UNSPECIFIED: Outcome.UNSPECIFIED,
    pb.NOTE_KIND_NOT_APPLICABLE: Outcome.NOT_APPLICABLE,
    pb.NOTE_KIND_REWARD_ERROR: Outcome.REWARD_ERROR,
    pb.NOTE_KIND_TIME_LIMIT: Outcome.TIME_LIMIT,
    pb.NOTE_KIND_UNAVAILABLE: Outcome.UNAVAILABLE,
}


def outcome_of(kind: int) -> Outcome:
    """A ``NoteKind`` number as an :class:`Outcome` (a kind newer than this client reads as unspecified).

    Example:
        >>> outcome_of(pb.NOTE_KIND_REWARD_ERROR), outcome_of(99)
        (<Outcome.REWARD_ERROR: 'reward_error'>, <Outcome.UNSPECIFIED: 'unspecified'>)
    """
    return _OF_KIND.get(kind, Outcome.UNSPECIFIED)


@dataclass(frozen=True)
class SampleOutcome:
    """One sample's outcome for one reward: its kind, and the server's reason when it is NaN."""

    kind: Outcome
    reason: str = ""


@dataclass(frozen=True)
class OutcomeCounts:
    """For one reward over a batch: how many samples scored and how many ended in each kind."""

    scored: int = 0
    not_applicable: int = 0
    reward_error: int = 0
    time_limit: int = 0
    unavailable: int = 0

    @property
    def failed(self) -> int:
        """Samples whose NaN means a failure (reward error, time limit, unavailable)."""
        return self.reward_error + self.time_limit + self.unavailable

    @property
    def total(self) -> int:
        return self.scored + self.not_applicable + self.failed

    @classmethod
    def of(cls, outcomes: Iterable[SampleOutcome]) -> OutcomeCounts:
        """Counted from per-sample outcomes (a note of unspecified kind counts as not applicable, as the server
        counts a NaN without a note).

        Example:
            >>> OutcomeCounts.of([SampleOutcome(Outcome.SCORED), SampleOutcome(Outcome.REWARD_ERROR, "boom")])
            OutcomeCounts(scored=1, not_applicable=0, reward_error=1, time_limit=0, unavailable=0)
        """
        seen = Counter(o.kind for o in outcomes)
        return cls(
            scored=seen[Outcome.SCORED],
            not_applicable=seen[Outcome.NOT_APPLICABLE] + seen[Outcome.UNSPECIFIED],
            reward_error=seen[Outcome.REWARD_ERROR],
            time_limit=seen[Outcome.TIME_LIMIT],
            unavailable=seen[Outcome.UNAVAILABLE],
        )


def sample_outcomes(
    scores: Sequence[float], reasons: Mapping[int, str], kinds: Mapping[int, Outcome]
) -> list[SampleOutcome]:
    """One outcome per sample: scored where the score is finite, else the note's kind and reason (a NaN without
    a note does not apply). A scored sample keeps its note's reason: the score stands, and the note says what
    else went wrong (a TRL function's ``log_extra`` column that had to be dropped).

    Example:
        >>> sample_outcomes([1.0, math.nan, math.nan], {1: "boom"}, {1: Outcome.REWARD_ERROR})
        ... # doctest: +NORMALIZE_WHITESPACE
        [SampleOutcome(kind=<Outcome.SCORED: 'scored'>, reason=''),
         SampleOutcome(kind=<Outcome.REWARD_ERROR: 'reward_error'>, reason='boom'),
         SampleOutcome(kind=<Outcome.NOT_APPLICABLE: 'not_applicable'>, reason='')]
        >>> sample_outcomes([0.5], {0: "log_extra column 'x' dropped"}, {0: Outcome.REWARD_ERROR})
        [SampleOutcome(kind=<Outcome.SCORED: 'scored'>, reason="log_extra column 'x' dropped")]
    """
    return [
        SampleOutcome(Outcome.SCORED, reasons.get(i, ""))
        if not math.isnan(score)
        else SampleOutcome(kinds.get(i, Outcome.NOT_APPLICABLE), reasons.get(i, ""))
        for i, score in enumerate(scores)
    ]


class ReasonTally:
    """Distinct (reward, kind, reason) triples with how many samples ended in each, in first-seen order.

    Both clients show each distinct reason once with a count instead of once per sample: a broken reward
    fails every sample of every batch with the same message. At most ``max_reasons`` distinct reasons are
    kept per reward (a reward whose message names each sample would otherwise grow without end); the rest
    are counted in :attr:`dropped`.

    Example:
        >>> tally, boom = ReasonTally(), SampleOutcome(Outcome.REWARD_ERROR, "boom")
        >>> tally.add("r", boom), tally.add("r", boom)
        (True, False)
        >>> tally.lines()
        ['r: reward_error on 2 samples: boom']
    """

    def __init__(self, max_reasons: int = 20) -> None:
        self.max_reasons = max_reasons
        self.counts: dict[tuple[str, Outcome, str], int] = {}
        #: (reward, kind) → samples whose reason was not kept.
        self.dropped: Counter[tuple[str, Outcome]] = Counter()
        self._per_reward: Counter[str] = Counter()

    def add(self, reward: str, outcome: SampleOutcome, n: int = 1) -> bool:
        """Count ``n`` samples of ``outcome`` (a NaN's, or a scored sample's note); True the first time it is seen."""
        key = (reward, outcome.kind, outcome.reason)
        if key in self.counts:
            self.counts[key] += n
            return False
        if self._per_reward[reward] >= self.max_reasons:
            self.dropped[reward, outcome.kind] += n
            return False
        self._per_reward[reward] += 1
        self.counts[key] = n
        return True

    def has(self, *kinds: Outcome) -> bool:
        """Whether any sample ended in one of ``kinds``."""
        return any(kind in kinds for _, kind, _ in self.counts) or any(kind in kinds for _, kind in self.dropped)

    def lines(self) -> list[str]:
        """One line per distinct reason: ``reward: kind on N samples: reason``."""
        out = []
        for (reward, kind, reason), n in self.counts.items():
            plural = "sample" if n == 1 else "samples"
            out.append(f"{reward}: {kind.value} on {n} {plural}" + (f": {reason}" if reason else ""))
        out += [
            f"{reward}: {kind.value} on {n} more samples, other reasons" for (reward, kind), n in self.dropped.items()
        ]
        return out
