"""``lora-serve``: a base model plus LoRA adapters behind vLLM's OpenAI-compatible server.

Every adapter is validated before vLLM starts (one line per problem, exit code 2); vLLM gets absolute adapter
paths, the smallest ``--max-lora-rank`` that fits and enough ``--max-loras``; ``--watch`` then loads new
checkpoints of a training run while serving.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from inference.adapters import (
    AdapterError,
    ServedModel,
    adapters_from_run,
    find_checkpoints,
    parse_adapter_arg,
    validate_adapters,
)
from inference.adapters import validate_adapter as _validate_adapter
from inference.vllm_launcher import LaunchPlan, VLLMError, VLLMServer, free_port, is_cpu_build, resolve_base_model
from inference.watch import CheckpointTracker, Watcher

PROG = "lora-serve"


def say(message: str) -> None:
    """Status lines go to stdout, flushed, so that a supervising process sees them as they happen."""
    print(f"{PROG}: {message}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a base model and LoRA adapters with vLLM's OpenAI-compatible server.",
        usage=f"{PROG} --base-model PATH_OR_ID [--adapter NAME=PATH ...] [--from-run DIR [--latest]] "
        "[--watch DIR] [--host H] [--port P] [-- extra vLLM args]",
        epilog="Arguments after `--` go to vLLM unchanged and win over lora-serve's own choices.",
    )
    parser.add_argument("--base-model", required=True, help="local model folder or hub id")
    parser.add_argument(
        "--adapter", action="append", default=[], metavar="NAME=PATH", help="serve the adapter at PATH as NAME"
    )
    parser.add_argument(
        "--from-run", metavar="DIR", help="serve a training run's checkpoint-N folders as <run>-step<N>"
    )
    parser.add_argument("--latest", action="store_true", help="with --from-run: only the newest checkpoint")
    parser.add_argument("--watch", metavar="DIR", help="load new checkpoint-N folders of DIR while serving")
    parser.add_argument("--keep", type=int, default=3, help="with --watch: newest checkpoints kept loaded (default 3)")
    parser.add_argument("--watch-interval", type=float, default=5.0, help="with --watch: seconds between scans")
    parser.add_argument("--host", default="127.0.0.1", help="address vLLM listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port vLLM listens on; 0 picks a free one")
    parser.add_argument(
        "--allow-base-mismatch",
        action="store_true",
        help="serve adapters whose base_model_name_or_path names another model (shapes are still checked)",
    )
    parser.add_argument("--startup-timeout", type=float, default=900.0, help="seconds to wait for vLLM (default 900)")
    parser.add_argument("--check", action="store_true", help="validate, print the vLLM command and exit")
    return parser


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split at the first ``--``: lora-serve's own arguments, then vLLM's.

    Example:
        >>> split_argv(["--base-model", "m", "--", "--dtype", "float32"])
        (['--base-model', 'm'], ['--dtype', 'float32'])
    """
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def collect_specs(args: argparse.Namespace) -> list[tuple[str, str | Path]]:
    """``(name, path)`` of every adapter to serve from the start."""
    specs: list[tuple[str, str | Path]] = [parse_adapter_arg(text) for text in args.adapter]
    if args.from_run:
        specs += adapters_from_run(args.from_run, latest=args.latest)
    return specs


def watch_rank(watch_dir: str, base_model: str, allow_base_mismatch: bool) -> int | None:
    """Largest rank among the valid checkpoints already in the watched folder (to size ``--max-lora-rank``)."""
    served = ServedModel(base_model)
    ranks = []
    for checkpoint in find_checkpoints(watch_dir):
        try:
            adapter = _validate_adapter("watch", checkpoint.path, served, allow_base_mismatch=allow_base_mismatch)
        except AdapterError:
            continue
        ranks.append(adapter.rank)
    return max(ranks, default=None)


class _Stop(Exception):
    """Raised in the main thread by the SIGINT/SIGTERM handler."""


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def make_plan(args: argparse.Namespace, extra: list[str]) -> LaunchPlan:
    """Validate everything and decide the vLLM arguments; raises :class:`AdapterError`."""
    base_model = resolve_base_model(args.base_model)
    problems = []
    if args.latest and not args.from_run:
        problems.append("--latest needs --from-run")
    if args.keep < 1:
        problems.append("--keep must be at least 1")
    if args.watch and not Path(args.watch).is_dir():
        problems.append(f"--watch {args.watch}: not a directory")
    if problems:
        raise AdapterError(problems)
    adapters = validate_adapters(collect_specs(args), base_model, allow_base_mismatch=args.allow_base_mismatch)
    plan = LaunchPlan(
        base_model=base_model,
        adapters=adapters,
        host=args.host,
        port=args.port or free_port(args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1"),
        watch_slots=args.keep if args.watch else 0,
        watch_rank=watch_rank(args.watch, base_model, args.allow_base_mismatch) if args.watch else None,
        extra_args=extra,
        cpu=is_cpu_build(),
    )
    plan.check()
    return plan


def serve(plan: LaunchPlan, args: argparse.Namespace) -> int:
    """Run vLLM until it exits, Ctrl-C or SIGTERM; with ``--watch``, poll for checkpoints meanwhile."""
    server = VLLMServer(plan)
    # Installed explicitly: a shell that starts a background job leaves SIGINT ignored, and Ctrl-C / SIGTERM
    # must always stop vLLM in order.
    previous = {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    watcher = None
    try:
        say("starting vLLM: " + shlex.join(plan.command()))
        server.start()
        names = server.wait_ready(args.startup_timeout)
        say(f"ready at {plan.url}/v1")
        say("models: " + ", ".join(names))
        if args.watch:
            tracker = CheckpointTracker(Path(args.watch).resolve(), keep=args.keep, taken=set(names))
            tracker.start(a.path for a in plan.adapters)
            watcher = Watcher(
                tracker,
                url=plan.url,
                base_model=plan.base_model,
                max_rank=plan.max_lora_rank,
                allow_base_mismatch=args.allow_base_mismatch,
                say=say,
            )
            say(f"watching {tracker.run_dir} for new checkpoints (keeping the newest {args.keep})")
        while server.alive():
            if watcher is not None:
                watcher.poll()
            time.sleep(args.watch_interval if watcher is not None else 1.0)
        say(f"vLLM exited with code {server.process.returncode if server.process else None}")
        return 1
    except VLLMError as exc:
        say(str(exc))
        return 1
    except _Stop:
        say("stopping vLLM")
        return 0
    finally:
        # Ignore further signals while stopping, so a second Ctrl-C cannot orphan vLLM's engine processes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if watcher is not None:
            watcher.close()
        code = server.stop()
        say(f"vLLM stopped (exit code {code})")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    own, extra = split_argv(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    try:
        plan = make_plan(args, extra)
    except AdapterError as exc:
        for problem in exc.problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    if args.check:
        say("adapters OK: " + (", ".join(f"{a.name} (rank {a.rank})" for a in plan.adapters) or "none"))
        say("vLLM command: " + shlex.join(plan.command()))
        return 0
    return serve(plan, args)


if __name__ == "__main__":
    sys.exit(main())
