"""``lora-eval`` results: per model × reward mean ± std and the weighted total, as a table, Markdown and a PNG.

NaN scores (a reward that does not apply to a sample) are left out of a mean and counted separately, the way the
reward service leaves them out of the weighted total.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TOTAL = "total"


@dataclass(frozen=True)
class Stat:
    """Mean and (population) standard deviation of the non-NaN scores, and how many were NaN."""

    mean: float
    std: float
    count: int
    nan: int = 0

    def __str__(self) -> str:
        return "n/a" if self.count == 0 else f"{self.mean:.3f} ± {self.std:.3f}"


def stat(values: Iterable[float | None]) -> Stat:
    """Summary of scores; None and NaN count as "does not apply".

    Example:
        >>> print(stat([1.0, 0.0, None, float("nan")]))
        0.500 ± 0.500
        >>> stat([1.0, 0.0, None]).nan
        1
    """
    values = list(values)
    kept = [v for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return Stat(math.nan, math.nan, 0, len(values))
    return Stat(statistics.fmean(kept), statistics.pstdev(kept), len(kept), len(values) - len(kept))


@dataclass(frozen=True)
class Summary:
    """Per model (rows) and reward (columns, then ``total``): a :class:`Stat`."""

    models: list[str]
    rewards: list[str]
    weights: dict[str, float]
    cells: dict[str, dict[str, Stat]]

    @property
    def columns(self) -> list[str]:
        return [*self.rewards, TOTAL]

    def to_json(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "rewards": self.rewards,
            "weights": self.weights,
            "cells": {m: {c: _finite(asdict(s)) for c, s in row.items()} for m, row in self.cells.items()},
        }


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: write null instead."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def summarize(records: Sequence[Mapping[str, Any]], rewards: Sequence[str], weights: Mapping[str, float]) -> Summary:
    """Aggregate scored records (``{"model", "scores": {reward: score}, "total"}``), models in first-seen order.

    Example:
        >>> rows = [{"model": "base", "scores": {"r": 0.0}, "total": 0.0},
        ...         {"model": "tuned", "scores": {"r": 1.0}, "total": 2.0}]
        >>> s = summarize(rows, ["r"], {"r": 2.0})
        >>> print(s.cells["tuned"]["r"], "|", s.cells["tuned"]["total"])
        1.000 ± 0.000 | 2.000 ± 0.000
    """
    models = list(dict.fromkeys(r["model"] for r in records))
    cells: dict[str, dict[str, Stat]] = {}
    for model in models:
        rows = [r for r in records if r["model"] == model and "scores" in r]
        cells[model] = {name: stat(r["scores"].get(name) for r in rows) for name in rewards}
        cells[model][TOTAL] = stat(r.get("total") for r in rows)
    return Summary(models, list(rewards), dict(weights), cells)


def _header(summary: Summary, column: str) -> str:
    if column == TOTAL:
        return "total (weighted)"
    weight = summary.weights.get(column, 1.0)
    return column if weight == 1.0 else f"{column} (×{weight:g})"


def markdown_table(summary: Summary) -> str:
    """The summary as a Markdown table: one row per model, mean ± std per reward and the weighted total.

    Example:
        >>> rows = [{"model": "base", "scores": {"r": 0.5}, "total": 0.5}]
        >>> print(markdown_table(summarize(rows, ["r"], {"r": 1.0})))
        | model | r | total (weighted) | n |
        |---|---|---|---|
        | base | 0.500 ± 0.000 | 0.500 ± 0.000 | 1 |
    """
    header = ["model", *(_header(summary, c) for c in summary.columns), "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in summary.models:
        row = summary.cells[model]
        count = row[TOTAL].count + row[TOTAL].nan
        lines.append("| " + " | ".join([model, *(str(row[c]) for c in summary.columns), str(count)]) + " |")
    return "\n".join(lines)


def plot(summary: Summary, path: str | Path) -> Path:
    """A grouped bar chart: one group per reward (and the total), one bar per model, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt

    columns = summary.columns
    width = 0.8 / max(1, len(summary.models))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(columns) * max(1, len(summary.models)) ** 0.5), 4.5))
    for index, model in enumerate(summary.models):
        stats = [summary.cells[model][c] for c in columns]
        positions = [c + (index - (len(summary.models) - 1) / 2) * width for c in range(len(columns))]
        means = [0.0 if s.count == 0 else s.mean for s in stats]
        errors = [0.0 if s.count == 0 else s.std for s in stats]
        axes.bar(positions, means, width, yerr=errors, capsize=3, label=model)
    axes.set_xticks(range(len(columns)), [_header(summary, c) for c in columns], rotation=20, ha="right")
    axes.axhline(0.0, color="black", linewidth=0.6)
    axes.set_ylabel("score")
    axes.set_title("Reward per model (mean ± std)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(summary: Summary, out_dir: str | Path) -> dict[str, Path]:
    """Write ``summary.md``, ``summary.json`` and ``summary.png`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "summary.md", "json": out / "summary.json", "png": out / "summary.png"}
    paths["markdown"].write_text(markdown_table(summary) + "\n", encoding="utf-8")
    paths["json"].write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    plot(summary, paths["png"])
    return paths
