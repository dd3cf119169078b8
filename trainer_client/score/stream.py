"""Scoring ``reward-score``'s lines: batches of Score calls in flight, results written in input order.

A batch never mixes prompt shapes in one call (a TRL function gets one shape per batch, and the server refuses
a call that mixes them): its chat lines and its plain lines go in separate calls. A line the server refuses
(``samples[i]`` in its message) is reported by its line number and left out; the rest of its batch is scored.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

import grpc

from trainer_client.client import RewardClient
from trainer_client.convert import RewardLike, ScoreResult, nan_to_none, reward_name
from trainer_client.errors import RewardServiceError
from trainer_client.outcomes import Outcome
from trainer_client.score.inputs import Line, batches
from trainer_client.score.report import Summary

_SAMPLE = re.compile(r"samples\[(\d+)\]")
#: One scored line: the line, the call's result, and the line's index in that call.
Scored = tuple[Line, ScoreResult, int]


def name_lines(details: str, lines: Sequence[Line]) -> str:
    """The server's message with its ``samples[i]`` written as the input's line numbers.

    Example:
        >>> lines = [Line(4, {}), Line(9, {})]
        >>> name_lines("samples[1] has no field 'answer'", lines)
        "line 9 has no field 'answer'"
        >>> name_lines("samples[0].completion has 9 characters", lines)
        'line 4: completion has 9 characters'
    """

    def line_of(match: re.Match) -> str:
        index = int(match.group(1))
        return f"line {lines[index].number}" if index < len(lines) else match.group(0)

    text = re.sub(r"samples\[(\d+)\]\.", lambda m: line_of(m) + ": ", details)
    return _SAMPLE.sub(line_of, text)


async def score_call(
    client: RewardClient, rewards: Sequence[RewardLike], lines: list[Line], report: Callable[[str], None]
) -> list[Scored]:
    """One Score call for ``lines``; a line the server refuses is reported by number, and the rest is sent again."""
    lines = list(lines)
    while lines:
        try:
            result = await client.score_async([line.sample for line in lines], rewards)
            return [(line, result, i) for i, line in enumerate(lines)]
        except RewardServiceError as exc:
            match = _SAMPLE.search(exc.details)
            if exc.code != grpc.StatusCode.INVALID_ARGUMENT or not match or int(match.group(1)) >= len(lines):
                raise RewardServiceError(exc.code, name_lines(exc.details, lines), exc.method, exc.target) from None
            message = name_lines(exc.details, lines)
            bad = lines.pop(int(match.group(1)))
            if not message.startswith(f"line {bad.number}"):
                message = f"line {bad.number}: {message}"
            report(f"{message} (refused by the server)")
    return []


async def score_batch(
    client: RewardClient, rewards: Sequence[RewardLike], batch: list[Line], report: Callable[[str], None]
) -> list[Scored]:
    """Score a batch, one call per prompt shape; the scored lines in input order."""
    shapes: dict[str, list[Line]] = {}
    for line in batch:
        shapes.setdefault(line.shape, []).append(line)
    scored: list[Scored] = []
    for lines in shapes.values():
        scored += await score_call(client, rewards, lines, report)
    return sorted(scored, key=lambda s: s[0].number)


def write_batch(out: IO[str], scored: list[Scored], names: Sequence[str], summary: Summary) -> None:
    """One output line per scored line: scores, total, notes (kind and reason of each null), extra columns."""
    # Per call, each reward looked up once (a lookup is a search, outcomes a pass over the batch).
    views: dict[int, dict[str, tuple]] = {}
    for line, result, i in scored:
        view = views.get(id(result))
        if view is None:
            view = views[id(result)] = {name: (result[name], result.outcomes(name)) for name in names}
        record: dict[str, Any] = {"line": line.number}
        if line.id is not None:
            record["id"] = line.id
        record["scores"] = {name: nan_to_none([scores[i]])[0] for name, (scores, _) in view.items()}
        record["total"] = nan_to_none([result.total[i]])[0]
        notes = {}
        for name, (scores, outcomes) in view.items():
            outcome = outcomes[i]
            summary.add(name, scores[i], outcome)
            if outcome.kind is not Outcome.SCORED or outcome.reason:  # a scored sample's note too
                notes[name] = {"kind": outcome.kind.value, **({"reason": outcome.reason} if outcome.reason else {})}
        summary.add("total", result.total[i])
        if notes:
            record["notes"] = notes
        extras = {r.requested: r.extra_columns for r in result.rewards if r.extra_columns}
        if extras:
            record["extra_columns"] = {
                name: {column: values[i] for column, values in columns.items()} for name, columns in extras.items()
            }
        record["catalogue_version"] = result.catalogue_version
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
    summary.scored += len(scored)


async def score_stream(
    client: RewardClient,
    rewards: Sequence[RewardLike],
    lines: Iterable[Line],
    out: IO[str],
    *,
    batch_size: int = 64,
    concurrency: int = 4,
    report: Callable[[str], None] = print,
    progress: Any = None,
    summary: Summary | None = None,
) -> Summary:
    """Score ``lines`` in batches, ``concurrency`` calls at a time, writing results in input order.

    On a service failure it stops sending, writes every batch that did finish, reports which lines are
    unscored, and re-raises.
    """
    names = [reward_name(r) for r in rewards]
    summary = summary if summary is not None else Summary()
    in_flight: collections.deque[tuple[list[Line], asyncio.Task]] = collections.deque()

    def finish(batch: list[Line], scored: list[Scored]) -> None:
        write_batch(out, scored, names, summary)
        if progress is not None:
            progress.update(len(batch))

    failure: RewardServiceError | None = None
    for batch in batches(lines, batch_size):
        in_flight.append((batch, asyncio.create_task(score_batch(client, rewards, batch, report))))
        if len(in_flight) >= concurrency:
            head, task = in_flight.popleft()
            try:
                finish(head, await task)
            except RewardServiceError as exc:
                failure = exc
                report(f"lines {head[0].number}-{head[-1].number}: not scored: {exc}")
                break
    for batch, task in in_flight:  # drain: keep whatever finished, in order
        try:
            finish(batch, await task)
        except RewardServiceError as exc:
            failure = failure or exc
            report(f"lines {batch[0].number}-{batch[-1].number}: not scored: {exc}")
    if failure is not None:
        raise failure
    return summary
