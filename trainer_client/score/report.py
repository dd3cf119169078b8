"""What ``reward-score`` says at the end: per-reward statistics, and each distinct reason a NaN came with."""

from __future__ import annotations

import collections
import math
import statistics
from dataclasses import dataclass, field

from trainer_client.outcomes import Outcome, ReasonTally, SampleOutcome

#: Outcomes that make ``reward-score`` exit non-zero (unless ``--allow-failed``): the rewards could not judge.
FAILING = (Outcome.REWARD_ERROR, Outcome.UNAVAILABLE)


@dataclass
class Summary:
    """Per-reward running statistics over every written line, and the reasons of every NaN."""

    scores: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    #: Lines written (each with every reward's score or null).
    scored: int = 0
    bad_lines: int = 0
    reasons: ReasonTally = field(default_factory=ReasonTally)

    def add(self, name: str, value: float, outcome: SampleOutcome | None = None) -> None:
        self.scores[name].append(value)
        if outcome is not None and (outcome.kind is not Outcome.SCORED or outcome.reason):
            self.reasons.add(name, outcome)

    @property
    def failed(self) -> bool:
        """Whether any sample ended in a reward error or an unavailable dependency."""
        return self.reasons.has(*FAILING)

    def failed_samples(self) -> int:
        """Samples (per reward) that ended in a reward error, a time limit or an unavailable dependency."""
        kept = sum(n for (_, kind, _), n in self.reasons.counts.items() if kind.failed)
        return kept + sum(n for (_, kind), n in self.reasons.dropped.items() if kind.failed)

    def table(self) -> str:
        """Mean, std and NaN count per reward (and the total), as an aligned text table.

        Example:
            >>> summary = Summary()
            >>> for value in (1.0, 0.0, math.nan):
            ...     summary.add("r", value)
            >>> print(summary.table())
            reward    mean     std  nan  n
            ------------------------------
            r       0.5000  0.5000    1  3
        """
        rows = [("reward", "mean", "std", "nan", "n")]
        for name, values in self.scores.items():
            finite = [v for v in values if not math.isnan(v)]
            mean = f"{statistics.fmean(finite):.4f}" if finite else "-"
            std = f"{statistics.pstdev(finite):.4f}" if finite else "-"
            rows.append((name, mean, std, str(len(values) - len(finite)), str(len(values))))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows
        ]
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])

    def closing_line(self) -> str:
        """``N lines written, M bad lines skipped`` and, when samples failed, how many."""
        text = f"{self.scored} lines written, {self.bad_lines} bad lines skipped"
        failed = self.failed_samples()
        if failed:
            text += f"; {failed} scores are null because a reward failed (reasons above)"
        return text
