"""Cutting a request's CPU work into worker tasks of about equal estimated cost.

A task carries its samples once and scores several rewards on them; per-sample rewards split
by rows and grouped rewards (tf-idf) by groups, so a large batch spreads over every worker with
scores identical to an unsplit run. Costs are learned per reward as it runs (:class:`CostModel`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from reward_server.registry import ParamValue, Reward

#: Every sample counts as this many characters on top of its own, for the per-sample overhead.
SAMPLE_CHARS = 500
#: Below this estimated cost (ms) a task is not worth its trip to another worker.
MIN_TASK_MS = 1.5
#: Cost priors in worker ms per character (see SAMPLE_CHARS) until a reward has been measured.
PRIOR_MS_PER_CHAR = {"sample": 1e-5, "group": 4e-5, "whole": 4e-5}


@dataclass(frozen=True)
class Split:
    """How a reward's work may be split across tasks without changing a score."""

    #: "sample": any rows; "group": the rows sharing a value of ``field`` stay together; "whole": never split.
    kind: Literal["sample", "group", "whole"]
    field: str = ""


def split_of(reward: Reward, params: Mapping[str, ParamValue]) -> Split:
    """How ``reward`` may be split (the registry declares it): rewards declared with ``@sample_reward``
    score each sample alone, a grouped batch reward needs each group's samples together, others run whole.

    Example:
        >>> import reward_server.rewards
        >>> from reward_server.registry import REGISTRY
        >>> [split_of(REGISTRY.get(n), REGISTRY.get(n).defaults()) for n in ("xml_integer", "tfidf_similarity")]
        [Split(kind='sample', field=''), Split(kind='group', field='answer')]
    """
    if reward.split == "group":
        return Split("group", str(params[reward.group_param]))
    return Split("sample") if reward.split == "sample" else Split("whole")


@dataclass
class Planned:
    """One task's share of the work: job index → global rows (None = every sample), and its estimated cost."""

    parts: dict[int, list[int] | None] = field(default_factory=dict)
    load: float = 0.0

    def add(self, job: int, rows: list[int] | None, cost: float) -> None:
        if rows is None or self.parts.get(job, []) is None:
            self.parts[job] = None
        else:
            self.parts.setdefault(job, []).extend(rows)  # in place: a task gets many groups
        self.load += cost


def plan_tasks(
    keys: Sequence[Sequence[Hashable] | None], rates: Sequence[float], units: Sequence[float], n_tasks: int
) -> list[Planned]:
    """Cut the jobs of a request into at most ``n_tasks`` tasks of about equal estimated cost.

    ``keys[j]`` is None for a per-sample job (its rows split anywhere), a group key per sample
    for a grouped job (a group's rows stay together), or ``[]`` for a job that runs whole.
    ``rates[j]`` is job j's estimated cost per unit and ``units[i]`` sample i's size. Indivisible
    pieces (whole jobs, groups) go largest first to the least loaded task; then the per-sample
    jobs fill every task up to the mean, in contiguous row ranges.

    Example:
        >>> tasks = plan_tasks([None, ["a", "a", "b", "b"], []], [1.0, 3.0, 0.5], [1.0] * 4, 2)
        >>> [(t.parts, t.load) for t in tasks]
        [({1: [0, 1], 2: None, 0: [0]}, 9.0), ({1: [2, 3], 0: [1, 2, 3]}, 9.0)]
    """
    everything = sum(units)
    if n_tasks <= 1 or len(units) <= 1:
        return [Planned(dict.fromkeys(range(len(keys))), sum(rates) * everything)]
    tasks = [Planned() for _ in range(n_tasks)]
    pieces: list[tuple[float, int, list[int] | None]] = []
    for job, key in enumerate(keys):
        if key is None:
            continue
        if not key:
            pieces.append((rates[job] * everything, job, None))
            continue
        groups: dict[Hashable, list[int]] = defaultdict(list)
        for i, value in enumerate(key):
            groups[value].append(i)
        pieces.extend((rates[job] * sum(units[i] for i in rows), job, rows) for rows in groups.values())
    for cost, job, rows in sorted(pieces, key=lambda piece: -piece[0]):
        min(tasks, key=lambda t: t.load).add(job, rows, cost)
    per_sample = [job for job, key in enumerate(keys) if key is None]
    if per_sample:
        rate = sum(rates[job] for job in per_sample)
        mean = (sum(t.load for t in tasks) + rate * everything) / n_tasks
        # Walk the rows task by task in the order of the first grouped job's rows, so that a task's
        # per-sample rows tend to be the rows it already holds: fewer samples to send it.
        grouped = next((job for job, key in enumerate(keys) if key), None)
        held = [t.parts.get(grouped) or [] for t in tasks] if grouped is not None else []
        order = [i for rows in held for i in rows]
        seen = set(order)
        order += [i for i in range(len(units)) if i not in seen]
        start = 0
        for k, task in enumerate(tasks):
            end, filled = start, 0.0
            want = (mean - task.load) / rate
            while end < len(order) and (filled < want or k == len(tasks) - 1):
                filled += units[order[end]]
                end += 1
            if end > start:
                for job in per_sample:
                    task.add(job, sorted(order[start:end]), rate / len(per_sample) * filled)
            start = end
    return [t for t in tasks if t.parts]


class CostModel:
    """Estimated worker milliseconds per unit (characters + SAMPLE_CHARS) for each reward, learned as it runs.

    Example:
        >>> model = CostModel()
        >>> model.rate("tfidf_similarity", "group") == PRIOR_MS_PER_CHAR["group"]
        True
        >>> model.observe("tfidf_similarity", units=1000.0, elapsed_ms=0.1)
        >>> model.observe("tfidf_similarity", units=1000.0, elapsed_ms=0.2)
        >>> round(model.rate("tfidf_similarity", "group"), 8)
        0.00013
    """

    #: Weight of the newest measurement (an exponential moving average rides out noise).
    SMOOTHING = 0.3

    def __init__(self) -> None:
        self.rates: dict[str, float] = {}

    def rate(self, name: str, kind: str) -> float:
        return max(self.rates.get(name, PRIOR_MS_PER_CHAR[kind]), 1e-9)  # never 0: the planner divides by it

    def observe(self, name: str, units: float, elapsed_ms: float) -> None:
        if units <= 0:
            return
        previous = self.rates.get(name)
        measured = elapsed_ms / units
        self.rates[name] = measured if previous is None else previous + self.SMOOTHING * (measured - previous)
