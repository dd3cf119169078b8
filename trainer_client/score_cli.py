"""``reward-score``: score a JSONL file of (prompt, completion, fields) with the reward service.

    reward-score samples.jsonl -o scores.jsonl --target 127.0.0.1:50051 \\
        --reward correctness_reward_func --reward xml_strict_format:0.5 --param xml_strict_format.value=1

Each input line is ``{"prompt": str | messages, "completion": str | messages, "fields": {...}, "completion_ids":
[int, ...], "id": ...}`` (all but completion optional; fields keep their JSON types; completion_ids are needed only
by rewards that read them). Each output line is ``{"line": N, "id": ..., "scores": {reward: score|null},
"total": x|null, "extra_columns": {reward: {column: text}}, "catalogue_version": "..."}``, in input order
(``extra_columns`` only when a reward returned some). A bad line is reported on stderr with its number and
skipped; every batch scored is written at once, so a failure later loses nothing already scored.
Exit codes: 0 all lines scored, 3 some lines skipped as bad, 1 the service failed (the rest is unscored),
2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
import yaml

from trainer_client.client import RetryPolicy, RewardClient
from trainer_client.convert import (
    RewardInfo,
    RewardLike,
    json_object,
    nan_to_none,
    reward_name,
    reward_spec,
    to_sample,
)
from trainer_client.errors import InputError, PreflightError, RecipeError, RewardServiceError
from trainer_client.preflight import check_reward, check_service, find_reward

TOKEN_ENV = "REWARD_SERVICE_TOKEN"
TARGET_ENV = "REWARD_SERVICE_TARGET"
_BAD_SAMPLE = re.compile(r"samples\[(\d+)\]")


@dataclass
class Line:
    """One valid input line, ready to send."""

    number: int
    sample: dict[str, Any]
    id: Any = None


@dataclass
class Summary:
    """Per-reward running statistics over every scored sample."""

    scores: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    scored: int = 0
    bad_lines: int = 0

    def add(self, name: str, value: float) -> None:
        self.scores[name].append(value)

    def table(self) -> str:
        """Mean, std and NaN count per reward (and the total), as an aligned text table."""
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


def parse_line(number: int, text: str, needed: Sequence[str], id_readers: Sequence[str] = ()) -> Line:
    """Check one JSONL line and turn it into a :class:`Line`; raises InputError naming the line.

    ``needed``: fields the rewards read; ``id_readers``: the rewards that read ``completion_ids`` (if any, the
    line must carry them).
    """
    record = json_object(text, f"line {number}")
    try:
        to_sample(record, number)  # the same checks the client makes before sending
    except InputError as exc:
        raise InputError(f"line {number}: {str(exc).split(': ', 1)[-1]}") from None
    fields = record.get("fields") or {}
    missing = [f for f in needed if f not in fields]
    if missing:
        raise InputError(f"line {number}: fields has no {missing[0]!r}, which the rewards read; has {sorted(fields)}")
    if id_readers and record.get("completion_ids") is None:
        raise InputError(f"line {number}: no 'completion_ids', which reward {id_readers[0]!r} reads")
    sample = {"prompt": record.get("prompt"), "completion": record["completion"], "fields": fields}
    if record.get("completion_ids") is not None:
        sample["completion_ids"] = record["completion_ids"]
    return Line(number, sample, record.get("id"))


def read_lines(handle: IO[str], needed: Sequence[str], report, id_readers: Sequence[str] = ()) -> Iterator[Line]:
    """Valid lines of ``handle``; bad ones go to ``report`` (with their number) and are skipped."""
    for number, text in enumerate(handle, 1):
        if not text.strip():
            continue
        try:
            yield parse_line(number, text, needed, id_readers)
        except InputError as exc:
            report(str(exc))


def batches(lines: Iterable[Line], size: int) -> Iterator[list[Line]]:
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def score_batch(client: RewardClient, rewards: Sequence[RewardLike], batch: list[Line], report) -> tuple:
    """Score a batch; a sample the server refuses (``samples[i]`` in its message) is reported and left out."""
    batch = list(batch)
    while batch:
        try:
            return batch, await client.score_async([line.sample for line in batch], rewards)
        except RewardServiceError as exc:
            match = _BAD_SAMPLE.search(exc.details)
            if exc.code != grpc.StatusCode.INVALID_ARGUMENT or not match or int(match.group(1)) >= len(batch):
                raise
            bad = batch.pop(int(match.group(1)))
            report(f"line {bad.number}: refused by the server: {exc.details}")
    return batch, None


def write_batch(out: IO[str], batch: list[Line], result, names: Sequence[str], summary: Summary) -> None:
    if result is None:
        return
    # Each reward's scores looked up once per batch (result[name] is a search), NaN → None for the JSON.
    columns = {name: result[name] for name in names}
    shown = {name: nan_to_none(scores) for name, scores in columns.items()}
    totals = nan_to_none(result.total)
    extras = {r.requested: r.extra_columns for r in result.rewards if r.extra_columns}
    for i, line in enumerate(batch):
        record: dict[str, Any] = {"line": line.number}
        if line.id is not None:
            record["id"] = line.id
        record["scores"] = {name: scores[i] for name, scores in shown.items()}
        record["total"] = totals[i]
        if extras:
            record["extra_columns"] = {
                name: {column: values[i] for column, values in columns.items()} for name, columns in extras.items()
            }
        record["catalogue_version"] = result.catalogue_version
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        for name, scores in columns.items():
            summary.add(name, scores[i])
        summary.add("total", result.total[i])
    out.flush()
    summary.scored += len(batch)


async def score_stream(
    client: RewardClient,
    rewards: Sequence[RewardLike],
    lines: Iterable[Line],
    out: IO[str],
    *,
    batch_size: int = 64,
    concurrency: int = 4,
    report=print,
    progress=None,
    summary: Summary | None = None,
) -> Summary:
    """Score ``lines`` in batches, ``concurrency`` calls at a time, writing results in input order.

    On a service failure it stops sending, writes every batch that did finish, reports which lines are
    unscored, and re-raises.
    """
    names = [reward_name(r) for r in rewards]
    summary = summary if summary is not None else Summary()
    in_flight: collections.deque[tuple[list[Line], asyncio.Task]] = collections.deque()

    def finish(batch: list[Line], result: Any) -> None:
        kept, scored = result
        write_batch(out, kept, scored, names, summary)
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


def load_rewards_file(path: str | Path) -> list[RewardLike]:
    """Rewards from YAML: a list of names / {name, weight, params}, or a mapping with ``rewards:`` (a recipe)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"cannot read rewards file {path}: {exc}") from exc
    if isinstance(data, Mapping):
        data = data.get("rewards")
    if not isinstance(data, list) or not data:
        raise RecipeError(f"rewards file {path}: expected a list of rewards (or a mapping with a 'rewards' list)")
    for i, reward in enumerate(data):
        reward_spec(reward, i)
    return data


def rewards_from_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rewards from --rewards-file, then --reward NAME[:WEIGHT], then --param NAME.KEY=VALUE on top."""
    rewards: list[dict[str, Any]] = []
    if args.rewards_file:
        for r in load_rewards_file(args.rewards_file):
            rewards.append({"name": r} if isinstance(r, str) else dict(r))
    for text in args.reward:
        name, _, weight = text.partition(":")
        entry: dict[str, Any] = {"name": name.strip()}
        if weight:
            try:
                entry["weight"] = float(weight)
            except ValueError:
                raise RecipeError(f"--reward {text!r}: weight {weight!r} is not a number") from None
        rewards.append(entry)
    by_name = {r["name"]: r for r in rewards}
    for text in args.param:
        key, sep, raw = text.partition("=")
        name, dot, param = key.rpartition(".")
        if not sep or not dot or name not in by_name:
            raise RecipeError(f"--param {text!r}: expected REWARD.PARAM=VALUE for a reward given with --reward")
        by_name[name].setdefault("params", {})[param] = yaml.safe_load(raw)
    if not rewards:
        raise RecipeError("name at least one reward (--reward NAME or --rewards-file FILE)")
    return rewards


def needed_fields(rewards: Sequence[Mapping[str, Any]], catalogue: Sequence[RewardInfo]) -> list[str]:
    """Check rewards against the catalogue; the fields every line must carry."""
    needed: list[str] = []
    for reward in rewards:
        params = reward.get("params") or {}
        info = check_reward(reward["name"], params, catalogue)
        needed += [f for f in info.fields_read(params) if f not in needed]
    return needed


def id_readers(rewards: Sequence[Mapping[str, Any]], catalogue: Sequence[RewardInfo]) -> list[str]:
    """The rewards (as named) that read ``completion_ids``: every line must carry them."""
    return [r["name"] for r in rewards if find_reward(r["name"], catalogue).reads_completion_ids]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reward-score", description="Score a JSONL file of completions with the reward service."
    )
    parser.add_argument("input", help="JSONL file of {prompt, completion, fields, completion_ids} ('-' for stdin)")
    parser.add_argument("-o", "--output", default="-", help="JSONL file to write ('-' for stdout, the default)")
    parser.add_argument("--target", default=os.environ.get(TARGET_ENV, "127.0.0.1:50051"), help="reward service")
    parser.add_argument("--reward", action="append", default=[], metavar="NAME[:WEIGHT]", help="a reward to apply")
    parser.add_argument("--param", action="append", default=[], metavar="NAME.KEY=VALUE", help="a reward param")
    parser.add_argument("--rewards-file", metavar="FILE", help="YAML list of rewards, or a grpo-train recipe")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per Score call (default 64)")
    parser.add_argument("--concurrency", type=int, default=4, help="Score calls in flight (default 4)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per call, retries included")
    parser.add_argument("--token", default=None, help=f"bearer token (default: ${TOKEN_ENV})")
    parser.add_argument("--tls", action="store_true", help="use TLS (system root certificates)")
    parser.add_argument("--tls-ca", metavar="PEM", help="use TLS with this root CA (implies --tls)")
    parser.add_argument("--client-cert", metavar="PEM", help="client certificate, for a server that requires mTLS")
    parser.add_argument("--client-key", metavar="PEM", help="private key of --client-cert")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _open(path: str, mode: str) -> IO[str]:
    if path == "-":
        return sys.stdin if "r" in mode else sys.stdout
    return open(path, mode, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.concurrency < 1:
        print("reward-score: --batch-size and --concurrency must be at least 1", file=sys.stderr)
        return 2
    summary = Summary()

    def report(message: str) -> None:
        summary.bad_lines += message.startswith("line ")
        print(f"reward-score: {message}", file=sys.stderr, flush=True)

    client = RewardClient(
        args.target,
        deadline_s=args.deadline,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        tls=args.tls_ca or args.tls,
        client_cert=args.client_cert,
        client_key=args.client_key,
        retry=RetryPolicy(),
    )
    try:
        rewards = rewards_from_args(args)
        catalogue = check_service(client)
        needed = needed_fields(rewards, catalogue)
        readers = id_readers(rewards, catalogue)
    except (RecipeError, InputError) as exc:
        print(f"reward-score: {exc}", file=sys.stderr)
        return 2
    except PreflightError as exc:
        print(f"reward-score: {exc}", file=sys.stderr)
        return 1
    source: IO[str] | None = None
    total = None
    try:
        source = _open(args.input, "r")
        if not args.no_progress and source is not sys.stdin:  # the bar's total: count, then rewind (not stdin)
            total = sum(1 for text in source if text.strip())
            source.seek(0)
    except OSError as exc:
        if source is not None:
            source.close()
        print(f"reward-score: cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=total, unit="sample", desc="scoring", file=sys.stderr)

    def bad_line(message: str) -> None:
        report(message)
        if progress is not None:
            progress.update(1)

    out = _open(args.output, "w")
    code = 0
    try:
        asyncio.run(
            score_stream(
                client,
                rewards,
                read_lines(source, needed, bad_line, readers),
                out,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                report=report,
                progress=progress,
                summary=summary,
            )
        )
    except RewardServiceError as exc:
        print(f"reward-score: stopped, the reward service failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        if progress is not None:
            progress.close()
        for handle in (source, out):
            if handle not in (sys.stdin, sys.stdout):
                handle.close()
        client.close()
    print(f"\n{summary.table()}", file=sys.stderr)
    print(f"{summary.scored} samples scored, {summary.bad_lines} bad lines skipped", file=sys.stderr)
    if code == 0 and summary.bad_lines:
        code = 3
    return code


if __name__ == "__main__":
    sys.exit(main())
