"""The local engines: :class:`LocalEngine` (bubblewrap sandbox) and :class:`UnsafeLocalEngine` (no sandbox).

Both start the same harness (``harness.py``) once per completion and give it every test; the harness runs each
test in a fresh child under rlimits. The sandboxed one starts it inside bwrap (namespaces, read-only /usr, a
size-capped tmpfs, seccomp, an unprivileged host uid); the unsafe one starts it as a plain child process.

The whole sandbox lives under one wall-clock deadline (compile + every test's limit + start-up slack). Past it, on
cancellation of the request, or on any exception in the caller's thread (a per-sample budget's SampleTimeout), the
outer bwrap is SIGKILLed and waited for: ``--die-with-parent`` takes its pid namespace's init with it, and the
kernel kills whatever is left in that namespace, ``setsid`` or not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import marshal
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from reward_server import cancellation
from reward_server.code.execution import EngineUnavailable, RunLimits, TestInput, TestRun, Verdict
from reward_server.code.languages import Language, language
from reward_server.code.sandbox import bwrap
from reward_server.code.sandbox.seccomp import build_filter
from reward_server.code.sandbox.slots import Slots, server_slots
from reward_server.settings import CodeSettings

log = logging.getLogger(__name__)

HARNESS = (Path(__file__).with_name("harness.py")).read_text()
#: Start-up of bwrap and the harness, and reading results back, on top of the tests' own limits.
STARTUP_SLACK_S = 5.0


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of the sandbox as a whole and of what is not per-test (see :class:`RunLimits` for those)."""

    #: Size of the tmpfs that holds the program and its work dir.
    work_mb: int = 64
    #: Largest file a test may write (RLIMIT_FSIZE).
    file_mb: int = 32
    #: Processes (threads included) of the sandbox's uid, the harness and the namespace's init among them.
    processes: int = 32
    open_files: int = 64
    #: Address space of the compiler (C++ needs more than a test).
    compile_memory_mb: int = 2048


class _HarnessEngine:
    """What both local engines share: the request to the harness, the wait, and reading its lines back."""

    name = ""
    sandboxed = True

    def __init__(self, settings: CodeSettings | None = None, limits: SandboxLimits | None = None) -> None:
        self.settings = settings or CodeSettings()
        self.sandbox_limits = limits or SandboxLimits()

    @property
    def slots(self) -> Slots:
        """The server-wide limit on running sandboxes (made on first use: in the worker, which knows its server)."""
        return server_slots(self.settings.code_max_concurrency)

    @cached_property
    def python(self) -> Path:
        try:
            return bwrap.find_python(self.settings.sandbox_python)
        except bwrap.SandboxSetupError as exc:
            raise EngineUnavailable(f"{self.name} engine: {exc}") from None

    def run(
        self,
        language_name: str,
        source: str,
        tests: Sequence[TestInput],
        limits: RunLimits,
        stop_on_failure: bool = False,
    ) -> list[TestRun]:
        """Run ``source`` against ``tests``: one sandbox, each test in a fresh child; one :class:`TestRun` each.

        Raises ``ValueError`` for an unsupported language or a function-call test in a language other than Python,
        :class:`EngineUnavailable` when the sandbox itself fails.
        """
        lang = language(language_name)
        if not lang.in_harness and any(t.fn_name for t in tests):
            raise ValueError(f"function-call tests are run for Python only, not {lang.name}")
        if not tests:
            return []
        request = self._request(lang, source, tests, limits, stop_on_failure)
        budget = (limits.compile_time_limit_s if lang.compile else 0) + len(tests) * (limits.time_limit_s + 0.2)
        with self.slots.hold():
            for attempt in range(2):
                out, err, code, killed = self._start_and_wait(lang, request, budget + STARTUP_SLACK_S)
                try:
                    return self._results(out, err, code, len(tests), killed)
                except EngineUnavailable as exc:
                    # The sandbox printed nothing: nothing of the program ran, so once more. A server that runs as
                    # root forks bwrap (a uid change rules out vfork) from a process with gRPC's threads, and the
                    # child then sometimes aborts in gRPC's fork handler before it execs (SIGABRT, ~1 in 20 here
                    # while a server starts). A sandbox that cannot start fails twice.
                    if killed or attempt or out.strip():
                        raise
                    log.warning("%s, starting it once more", exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(
        self, lang: Language, source: str, tests: Sequence[TestInput], limits: RunLimits, stop: bool
    ) -> dict[str, Any]:
        sl = self.sandbox_limits
        fill = {"{python}": str(self.python)}
        return {
            "file": lang.file_name,
            "source": source,
            "compile": [fill.get(a, a) for a in lang.compile] if lang.compile else None,
            "run": None if lang.in_harness else [fill.get(a, a) for a in lang.run],
            "tests": [{"stdin": t.stdin, "fn_name": t.fn_name, "args": list(t.args)} for t in tests],
            "limits": {
                "time_limit_s": limits.time_limit_s,
                "memory_mb": limits.memory_mb,
                "output_bytes": limits.output_bytes,
                "compile_time_limit_s": limits.compile_time_limit_s,
                "compile_memory_mb": sl.compile_memory_mb,
                "nproc": sl.processes,
                "nofile": sl.open_files,
                "fsize_bytes": sl.file_mb << 20,
            },
            "stop_on_failure": stop,
            "sandboxed": self.sandboxed,
            "python_path": list(self.settings.sandbox_python_path),
        }

    def _popen(self, lang: Language, request: dict[str, Any]) -> tuple[subprocess.Popen[bytes], list[int], Path | None]:
        """Start the harness; returns the process, fds to close once it started, and a directory to remove."""
        raise NotImplementedError

    def _start_and_wait(self, lang: Language, request: dict[str, Any], wall_s: float) -> tuple[bytes, bytes, int, bool]:
        """Run the harness; its stdout, stderr, exit status, and whether the wall-clock backstop had to kill it."""
        proc, fds, scratch = self._popen(lang, request)
        data: bytes | None = marshal.dumps(request)  # plain values only; the harness reads it without imports
        try:
            for fd in fds:
                os.close(fd)
            deadline = time.monotonic() + wall_s
            while True:
                try:
                    out, err = proc.communicate(data, timeout=0.1)  # called again after a timeout: input None
                    return out, err, proc.returncode, False
                except subprocess.TimeoutExpired:
                    data = None
                if cancellation.cancelled():
                    raise cancellation.RequestCancelled("request cancelled while its code ran")
                if time.monotonic() > deadline:  # a backstop: the harness enforces each test's limit itself
                    log.warning("%s engine: sandbox over its wall-clock limit of %.1f s, killed", self.name, wall_s)
                    inner = _sigkill(proc)
                    out, err = proc.communicate()
                    _wait_gone(inner)
                    return out, err, proc.returncode, True
        finally:
            self._kill(proc)
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the outer process (and its process group), reap it, and wait until the sandbox's pid namespace is
        gone: its init (the outer process's child) exits only once the kernel has killed everything inside."""
        inner = _sigkill(proc) if proc.returncode is None else []
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.wait()
        _wait_gone(inner)

    def _results(self, out: bytes, err: bytes, code: int, n: int, killed: bool = False) -> list[TestRun]:
        runs: dict[int, TestRun] = {}
        started: int | None = None
        done = False
        compile_failed: TestRun | None = None
        for line in out.decode("utf-8", "replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "start" in event:
                started = event["start"]
            elif "compile" in event:
                if event["compile"]["verdict"] != Verdict.OK:
                    compile_failed = _test_run(dict(event["compile"], verdict=Verdict.COMPILE_ERROR))
            elif "i" in event:
                runs[event["i"]] = _test_run(event)
                started = None
            elif event.get("done"):
                done = True
        if compile_failed is not None:
            return [compile_failed] * n
        if done and len(runs) == n:
            return [runs[i] for i in range(n)]
        stderr = err.decode("utf-8", "replace").strip()
        if started is None:  # the harness never got to a test, or ended between two: ours to fix, not the program's
            what = "was killed at its wall-clock limit" if killed else f"failed (exit {code})"
            raise EngineUnavailable(f"{self.name} engine: the sandbox {what}: {stderr[-500:] or 'no output'}")
        if killed:  # inside test ``started``, past the whole sandbox's budget
            why = "the sandbox was killed at its wall-clock limit"
            runs[started] = TestRun(Verdict.TIME_LIMIT, "", why)
        else:  # it ended inside test ``started``: the program took the harness down with it (kill(-1), ...)
            why = f"the program ended the sandbox's harness (exit {code})"
            runs[started] = TestRun(Verdict.RUNTIME_ERROR, "", why)
        return [runs.get(i) or TestRun(Verdict.NOT_RUN, "", why) for i in range(n)]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _sigkill(proc: subprocess.Popen[bytes]) -> list[int]:
    """SIGKILL the outer process and its process group; returns its children (the namespace's init) to wait for."""
    inner = _children(proc.pid)
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill()
    return inner


def _wait_gone(pids: list[int], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.005)


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has released everything but its exit status)."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _test_run(event: dict[str, Any]) -> TestRun:
    return TestRun(
        Verdict(event["verdict"]),
        event.get("stdout", ""),
        event.get("stderr_tail", ""),
        event.get("exit_code"),
        float(event.get("elapsed_s") or 0.0),
    )


def _as_sandbox_uid() -> dict[str, Any]:
    """Popen arguments that start a process as the unprivileged sandbox uid when we are root (RLIMIT_NPROC)."""
    if not bwrap.runs_as_root():
        return {}
    return {"user": bwrap.SANDBOX_UID, "group": bwrap.SANDBOX_UID, "extra_groups": []}


class LocalEngine(_HarnessEngine):
    """The bubblewrap sandbox (the default engine). See the module docstring and README: Code execution."""

    name = "local"
    sandboxed = True

    @cached_property
    def bwrap(self) -> Path:
        try:
            return bwrap.bwrap_for_sandbox_uid(bwrap.find_bwrap(self.settings.sandbox_bwrap))
        except (bwrap.SandboxSetupError, OSError) as exc:
            raise EngineUnavailable(f"local engine: {exc}") from None

    @cached_property
    def seccomp_filter(self) -> bytes:
        try:
            return build_filter()
        except RuntimeError as exc:
            raise EngineUnavailable(f"local engine: {exc}") from None

    def binds(self, lang: Language) -> list[str]:
        return [*lang.binds, *bwrap.interpreter_binds(self.python)]

    def _popen(self, lang: Language, request: dict[str, Any]) -> tuple[subprocess.Popen[bytes], list[int], Path | None]:
        request["prog"], request["work"] = bwrap.PROG, bwrap.WORK
        request["python_path"] = bwrap.python_path_inside(self.settings.sandbox_python_path)
        read, write = os.pipe()
        try:
            os.write(write, self.seccomp_filter)  # a few hundred bytes: fits the pipe's buffer
        finally:
            os.close(write)
        argv = [str(self.python), "-S", "-I", "-c", HARNESS]
        python_path = self.settings.sandbox_python_path
        cmd = bwrap.command(self.bwrap, self.binds(lang), self.sandbox_limits.work_mb << 20, read, argv, python_path)
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(read,),
                start_new_session=True,
                env={},
                **_as_sandbox_uid(),
            )
        except OSError as exc:
            os.close(read)
            raise EngineUnavailable(f"local engine: cannot start bwrap ({self.bwrap}): {exc}") from None
        return proc, [read], None


class UnsafeLocalEngine(_HarnessEngine):
    """No sandbox: the harness runs as a plain child process of the server, as the server's user, with the test
    rlimits only. Any program can read and write what the server can, reach the network and leave processes
    behind. Only behind ``unsafe_run_code_without_sandbox`` (``--unsafe-run-code-without-sandbox``); the bench uses
    it to measure what the sandbox costs."""

    name = "unsafe-local"
    sandboxed = False

    @cached_property
    def python(self) -> Path:
        name = self.settings.sandbox_python or bwrap.DEFAULT_PYTHON
        return Path(shutil.which(name) or sys.executable)

    def _popen(self, lang: Language, request: dict[str, Any]) -> tuple[subprocess.Popen[bytes], list[int], Path | None]:
        scratch = Path(tempfile.mkdtemp(prefix="reward-code-unsafe-"))
        request["prog"], request["work"] = str(scratch / "prog"), str(scratch / "work")
        proc = subprocess.Popen(
            [str(self.python), "-S", "-I", "-c", HARNESS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=scratch,
            start_new_session=True,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(scratch)},
        )
        return proc, [], scratch
