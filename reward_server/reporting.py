"""What the server says about scored requests: metrics per reward and outcome, and warnings that speak.

Transport-free, so that every transport reports a scored request the same way (:func:`report_outcomes`).
A reward that fails must be seen by whoever runs the server, not only by the caller: a reward error or an
unavailable dependency is logged at WARNING with the reward, the reason and (for a reward error) the
``file:line`` in the reward's own source. A broken reward fails on every sample of every batch, so the same
reward and message are logged once per window, and the repeats are folded into a count on the next line.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reward_server import metrics
from reward_server.outcomes import NoteKind

if TYPE_CHECKING:
    from reward_server.calls import RewardOutcome

log = logging.getLogger("reward_server.outcomes")

#: Kinds worth a WARNING (the operator has something to fix); time limits are INFO, not-applicable silent.
_LEVEL = {
    NoteKind.REWARD_ERROR: logging.WARNING,
    NoteKind.UNAVAILABLE: logging.WARNING,
    NoteKind.TIME_LIMIT: logging.INFO,
}


class RepeatLimiter:
    """Lets a message through once per ``window_s`` per key and counts what it held back in between.

    Example:
        >>> clock = iter([0.0, 1.0, 2.0, 61.0]).__next__
        >>> limiter = RepeatLimiter(60.0, clock=clock)
        >>> [limiter.admit("k", 1) for _ in range(4)]
        [(True, 0), (False, 0), (False, 0), (True, 2)]
    """

    def __init__(self, window_s: float = 60.0, max_keys: int = 1024, clock=time.monotonic) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        #: key → (when it was last let through, occurrences held back since)
        self._seen: OrderedDict[object, tuple[float, int]] = OrderedDict()

    def admit(self, key: object, count: int = 1) -> tuple[bool, int]:
        """(whether to log now, how many occurrences were held back since the last line for this key)."""
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + count)
            return False, 0
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        return True, last[1] if last is not None else 0


_limiter = RepeatLimiter()
#: Reward name → when a request last scored it (monotonic): a reload that removes a reward in use warns.
_last_used: dict[str, float] = {}


def used_within(name: str, seconds: float) -> bool:
    """True when a request scored reward ``name`` in the last ``seconds``."""
    last = _last_used.get(name)
    return last is not None and time.monotonic() - last <= seconds


@dataclass(frozen=True)
class _RewardMetrics:
    """One reward's labelled metric children, looked up once: ``labels()`` takes a lock and builds a key per call,
    which at thousands of one-sample calls a second is a visible share of the server's thread."""

    name: str
    seconds: Any
    samples: Any
    #: Outcome kind → its child, made on first use (a series appears once a sample ends in that kind).
    outcomes: dict[str, Any]

    @classmethod
    @functools.lru_cache(maxsize=4096)  # reward names come from the catalogue: a bounded set
    def of(cls, name: str) -> _RewardMetrics:
        return cls(name, metrics.REWARD_SECONDS.labels(name), metrics.SAMPLES.labels(name), {})

    def outcome(self, kind: str) -> Any:
        child = self.outcomes.get(kind)
        if child is None:
            child = self.outcomes[kind] = metrics.OUTCOMES.labels(self.name, kind)
        return child


def report_outcomes(outcomes: Sequence[RewardOutcome], n_samples: int, request_id: str = "") -> None:
    """Count a scored request in the metrics and log the failures it carried (rate-limited)."""
    now = time.monotonic()
    for outcome in outcomes:
        _last_used[outcome.name] = now
        children = _RewardMetrics.of(outcome.name)
        children.seconds.observe(outcome.elapsed_ms / 1000)
        children.samples.inc(n_samples)
        counts = outcome.counts
        for kind, count in counts.items():
            if count:
                children.outcome(kind).inc(count)
        if counts[NoteKind.TIME_LIMIT.label]:
            metrics.TIMEOUTS.labels(outcome.name).inc(counts[NoteKind.TIME_LIMIT.label])
        if outcome.notes:
            _log_failures(outcome, request_id)


def _log_failures(outcome: RewardOutcome, request_id: str) -> None:
    groups: Counter[tuple[NoteKind, str, str]] = Counter()
    first: dict[tuple[NoteKind, str, str], int] = {}
    for i, note in sorted(outcome.notes.items()):
        if note.kind in _LEVEL:
            key = (note.kind, note.reason, note.origin)
            groups[key] += 1
            first.setdefault(key, i)
    for (kind, reason, origin), count in groups.items():
        admitted, held_back = _limiter.admit((outcome.name, kind, reason, origin), count)
        if not admitted:
            continue
        where = f" at {origin}" if origin else ""
        repeats = f" (and {held_back} more like it since the last such line)" if held_back else ""
        log.log(
            _LEVEL[kind],
            "reward %s: %s on %d sample(s), first samples[%d] (request_id=%s): %s%s%s",
            outcome.name,
            kind.label.replace("_", " "),
            count,
            first[(kind, reason, origin)],
            request_id,
            reason,
            where,
            repeats,
        )
