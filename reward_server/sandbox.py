"""Hard per-call time limits for reward code that may not terminate in reasonable time.

math-verify's own timeouts use SIGALRM, which only works on a process's main thread and
cannot interrupt C code. Here the call runs in a persistent helper process instead; if it
overruns, the helper is killed (a hard stop, whatever it was doing) and a fresh one starts
on the next call. The calling thread only waits on a pipe, so this works from any thread.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

#: How long a new helper may take to import and warm up before it is given up on.
STARTUP_TIMEOUT_S = 120.0


class SampleTimeout(Exception):
    """A sample's computation ran past its time budget and was killed."""


def _serve(conn: Connection, warmup: Callable[[], Any] | None) -> None:
    if warmup is not None:
        warmup()
    conn.send("ready")
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return
        try:
            conn.send((True, fn(*args)))
        except Exception as exc:  # noqa: BLE001 - report any failure to the caller
            conn.send((False, exc))


class TimeLimitedRunner:
    """Runs picklable ``fn(*args)`` in a helper process, killing it after ``timeout`` seconds.

    ``warmup`` runs in each new helper before it takes calls (imports, caches), so a
    restart after a kill is not charged to the next sample's time budget.
    """

    def __init__(self, warmup: Callable[[], Any] | None = None) -> None:
        self._warmup = warmup
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> Connection:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self._warmup), daemon=True, name="reward-sandbox")
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(STARTUP_TIMEOUT_S) or parent.recv() != "ready":
            self.close()
            raise RuntimeError(f"sandbox process did not start within {STARTUP_TIMEOUT_S} s")
        return parent

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        conn = self._conn if self._proc is not None and self._proc.is_alive() else self._start()
        conn.send((fn, args))
        if not conn.poll(timeout):
            self.close()
            raise SampleTimeout(f"timed out after {timeout:g} s")
        ok, value = conn.recv()
        if ok:
            return value
        raise value

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None


_local = threading.local()


def run_with_timeout(
    fn: Callable[..., Any], *args: Any, timeout: float, warmup: Callable[[], Any] | None = None
) -> Any:
    """Call ``fn(*args)`` under a hard time limit, with one helper process per calling thread.

    Example:
        >>> run_with_timeout(pow, 2, 10, timeout=60)
        1024
    """
    runners = _local.__dict__.setdefault("runners", {})
    runner = runners.get(warmup)
    if runner is None:
        runner = runners[warmup] = TimeLimitedRunner(warmup)
    return runner.call(fn, *args, timeout=timeout)
