"""``reward-score``: score a JSONL file of (prompt, completion, fields) with the reward service.

    reward-score samples.jsonl -o scores.jsonl --target 127.0.0.1:50051 \\
        --reward correctness_reward_func --reward xml_strict_format:0.5 --param xml_strict_format.value=1
    reward-score --list          # the server's rewards: name, aliases, fields, params, source, enabled

Each input line is ``{"prompt": str | messages, "completion": str | messages, "fields": {...}, "completion_ids":
[int, ...], "id": ...}`` (all but completion optional; fields keep their JSON types; completion_ids are needed only
by rewards that read them), or a flat TRL-style row whose other top-level keys are fields (``{"prompt", "completion",
"solution"}``). Each output line is ``{"line": N, "id": ..., "scores": {reward: score|null}, "total": x|null,
"notes": {reward: {"kind", "reason"}}, "extra_columns": {reward: {column: text}}, "catalogue_version": "..."}``, in
input order (``notes`` only where a score is null, ``extra_columns`` only when a reward returned some). A bad line is
reported on stderr with its number and skipped; every batch scored is written at once, so a failure later loses
nothing already scored. Each distinct reason a score is null is printed once on stderr, with a count.

Exit codes: 0 all lines scored; 4 some samples ended in a reward error or an unavailable dependency
(``--allow-failed`` makes that 0); 3 some lines skipped as bad; 1 the service failed (the rest is unscored) or
refused the rewards; 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import IO

import grpc

from trainer_client.client import RetryPolicy, RewardClient
from trainer_client.errors import InputError, PreflightError, RecipeError, RewardServiceError
from trainer_client.preflight import service_catalogue
from trainer_client.score.inputs import read_lines
from trainer_client.score.listing import listing
from trainer_client.score.report import Summary
from trainer_client.score.rewards import id_readers, needed_fields, rewards_from_args
from trainer_client.score.stream import score_stream

TOKEN_ENV = "REWARD_SERVICE_TOKEN"
TARGET_ENV = "REWARD_SERVICE_TARGET"
#: Exit code when samples ended in a reward error or an unavailable dependency.
EXIT_FAILED_SAMPLES = 4
#: What to do about a refused preflight, in this command's own flags.
HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: f"give --token or set {TOKEN_ENV}",
    grpc.StatusCode.PERMISSION_DENIED: f"give the token (--token or {TOKEN_ENV}) or certificate this server accepts",
    grpc.StatusCode.UNAVAILABLE: f"start it with `reward-server`, or give --target (or set {TARGET_ENV})",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reward-score",
        description="Score a JSONL file of completions with the reward service, or list its rewards (--list).",
    )
    parser.add_argument(
        "input", nargs="?", help="JSONL file of {prompt, completion, fields, completion_ids} ('-' for stdin)"
    )
    parser.add_argument("-o", "--output", default="-", help="JSONL file to write ('-' for stdout, the default)")
    parser.add_argument("--list", action="store_true", help="print the server's rewards as a table and exit")
    parser.add_argument("--target", default=os.environ.get(TARGET_ENV, "127.0.0.1:50051"), help="reward service")
    parser.add_argument("--reward", action="append", default=[], metavar="NAME[:WEIGHT]", help="a reward to apply")
    parser.add_argument("--param", action="append", default=[], metavar="NAME.KEY=VALUE", help="a reward param")
    parser.add_argument("--rewards-file", metavar="FILE", help="YAML list of rewards, or a grpo-train recipe")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per Score call (default 64)")
    parser.add_argument("--concurrency", type=int, default=4, help="Score calls in flight (default 4)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per call, retries included")
    parser.add_argument(
        "--allow-failed",
        action="store_true",
        help="exit 0 even when samples ended in a reward error or an unavailable dependency (their scores are null)",
    )
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


def _error(message: str, code: int) -> int:
    print(f"reward-score: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.input is None and not args.list:
        parser.error("give an input file (or '-' for stdin), or --list")
    if args.batch_size < 1 or args.concurrency < 1:
        return _error("--batch-size and --concurrency must be at least 1", 2)
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
        catalogue = service_catalogue(client, HINTS)
        if args.list:
            client.close()
            print(listing(catalogue))
            return 0
        rewards = rewards_from_args(args)
        needed = needed_fields(rewards, catalogue.rewards)
        readers = id_readers(rewards, catalogue.rewards)
    except (RecipeError, InputError, PreflightError) as exc:
        client.close()
        return _error(str(exc), 1 if isinstance(exc, PreflightError) else 2)
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
        return _error(f"cannot read {args.input}: {exc}", 2)
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
    for line in summary.reasons.lines():
        print(f"reward-score: {line}", file=sys.stderr)
    print(summary.closing_line(), file=sys.stderr)
    if code == 0 and summary.failed and not args.allow_failed:
        code = EXIT_FAILED_SAMPLES
    if code == 0 and summary.bad_lines:
        code = 3
    return code


if __name__ == "__main__":
    sys.exit(main())
