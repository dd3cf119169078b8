"""Per-sample outcomes: what a NaN score means.

A NaN that means "does not apply" (TRL's None) and a NaN that means "your reward is broken" or "the judge is
down" must never look the same: the first is part of the training signal, the others poison GRPO's group
baseline if a trainer reads them as anything. Every note a reward or the engine writes carries a
:class:`NoteKind`, which travels as ``reward.v1.NoteKind`` (the numbers are the proto's).
"""

from __future__ import annotations

import enum
import math
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class NoteKind(enum.IntEnum):
    """Why a sample scored NaN (values equal ``reward.v1.NoteKind``)."""

    #: The reward does not apply to this sample (the reward's own None).
    NOT_APPLICABLE = 1
    #: The reward's code raised, or returned something that is not a score.
    REWARD_ERROR = 2
    #: Over its time budget.
    TIME_LIMIT = 3
    #: Something the reward depends on failed: a model pass, a judge endpoint, a code engine, the sandbox.
    UNAVAILABLE = 4

    @property
    def label(self) -> str:
        """The kind as metrics and logs name it: ``not_applicable``, ``reward_error``, ...

        Example:
            >>> NoteKind.TIME_LIMIT.label
            'time_limit'
        """
        return self.name.lower()


@dataclass(frozen=True)
class Note:
    """Why one sample scored NaN: a reason for people and a kind for programs."""

    reason: str
    kind: NoteKind = NoteKind.NOT_APPLICABLE
    #: For a reward error: ``file:line`` of the last frame in the reward's own source file (logged, not sent).
    origin: str = ""


def as_note(value: Note | str) -> Note:
    """A note as a reward wrote it: a :class:`Note`, or plain text (the reward's own reason, so not applicable).

    Example:
        >>> as_note("reference did not parse").kind.label
        'not_applicable'
    """
    return value if isinstance(value, Note) else Note(str(value))


def error_note(exc: BaseException, fn: Callable[..., Any] | None = None, prefix: str = "") -> Note:
    """A REWARD_ERROR note for ``exc`` raised by reward function ``fn``, pointing at ``fn``'s own code.

    The origin is the last traceback frame in ``fn``'s source file (where the user's bug is, rather than a
    library the reward called), else the last frame of all.

    Example:
        >>> def broken(completion):
        ...     return len(completion) / 0
        >>> try:
        ...     broken("x")
        ... except ZeroDivisionError as exc:
        ...     note = error_note(exc, broken)
        >>> note.kind.label, note.reason, note.origin.endswith(":2")
        ('reward_error', 'ZeroDivisionError: division by zero', True)
    """
    frames = traceback.extract_tb(exc.__traceback__)
    code = getattr(getattr(fn, "__code__", None), "co_filename", None)
    own = [f for f in frames if f.filename == code] or frames
    origin = f"{own[-1].filename}:{own[-1].lineno}" if own else ""
    return Note(f"{prefix}{type(exc).__name__}: {exc}", NoteKind.REWARD_ERROR, origin)


def notes_for(n: int, reason: str, kind: NoteKind) -> dict[int, Note]:
    """The same note for every sample of a batch of ``n`` (a batch-wide failure).

    Example:
        >>> notes_for(2, "boom", NoteKind.REWARD_ERROR)[1].kind.label
        'reward_error'
    """
    note = Note(reason, kind)
    return dict.fromkeys(range(n), note)


def count_outcomes(scores: Sequence[float], notes: Mapping[int, Note]) -> dict[str, int]:
    """How many samples scored and how many ended in each kind; a NaN without a note is not applicable.

    Example:
        >>> count_outcomes([1.0, math.nan, math.nan], {2: Note("x", NoteKind.TIME_LIMIT)})
        {'scored': 1, 'not_applicable': 1, 'reward_error': 0, 'time_limit': 1, 'unavailable': 0}
    """
    kinds: Counter[NoteKind] = Counter()
    scored = 0
    for i, score in enumerate(scores):
        if not math.isnan(score):
            scored += 1
        else:
            note = notes.get(i)
            kinds[note.kind if note is not None else NoteKind.NOT_APPLICABLE] += 1
    return {"scored": scored, **{kind.label: kinds[kind] for kind in NoteKind}}
