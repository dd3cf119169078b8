"""``reward-score --list``: the server's reward catalogue as a table a person can read."""

from __future__ import annotations

import json
from collections.abc import Sequence

from trainer_client.catalogue import Catalogue, RewardInfo

COLUMNS = ("name", "aliases", "fields", "params", "source", "enabled")


def row(info: RewardInfo) -> tuple[str, ...]:
    """One reward's cells: aliases and fields comma-separated, params as ``name=default``, enabled yes/no (why).

    Example:
        >>> from trainer_client.catalogue import ParamInfo
        >>> info = RewardInfo("xml_count", ["xmlcount_reward_func"], "", [], [ParamInfo("value", "number", 0.125, "")],
        ...                   False, "", "", True, "", source="built-in")
        >>> row(info)
        ('xml_count', 'xmlcount_reward_func', '-', 'value=0.125', 'built-in', 'yes')
    """
    params = ", ".join(f"{p.name}={json.dumps(p.default, ensure_ascii=False)}" for p in info.params)
    enabled = "yes" if info.available else f"no: {info.unavailable_reason or 'disabled'}"
    fields = [*info.fields, "completion_ids"] if info.reads_completion_ids else info.fields
    return (
        info.name,
        ", ".join(info.aliases) or "-",
        ", ".join(fields) or "-",
        params or "-",
        info.source or "-",
        enabled,
    )


def _wrap(cell: str, width: int) -> list[str]:
    """A comma-separated cell in lines of at most ``width`` characters (an item longer than that stays whole).

    Example:
        >>> _wrap("a=1, b=2, c=3", 9)
        ['a=1, b=2,', 'c=3']
    """
    lines: list[str] = []
    for item in cell.split(", "):
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += " " + item
        else:
            lines.append(item)
        lines[-1] += ","
    lines[-1] = lines[-1][:-1]
    return lines


def table(rewards: Sequence[RewardInfo], params_width: int = 60) -> str:
    """Every reward in aligned columns under a header; a long params cell wraps onto the lines below its reward."""
    rows = [[[c] for c in COLUMNS]]
    for info in rewards:
        cells = [[c] for c in row(info)]
        cells[3] = _wrap(cells[3][0], params_width)
        rows.append(cells)
    widths = [max(len(line) for r in rows for line in r[i]) for i in range(len(COLUMNS))]
    out: list[str] = []
    for r in rows:
        for k in range(max(len(cell) for cell in r)):
            parts = [(cell[k] if k < len(cell) else "").ljust(w) for cell, w in zip(r, widths, strict=True)]
            out.append("  ".join(parts).rstrip())
    return "\n".join([out[0], "-" * len(out[0]), *out[1:]])


def listing(catalogue: Catalogue) -> str:
    """The table and a line naming the server and catalogue versions."""
    versions = f"server {catalogue.server_version}, catalogue version {catalogue.catalogue_version or '-'}"
    return f"{table(catalogue.rewards)}\n\n{len(catalogue.rewards)} rewards ({versions})"
