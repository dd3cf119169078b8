"""Hard per-call time limits for reward code that may not terminate in reasonable time.

math-verify's own timeouts use SIGALRM, which only works on a process's main thread and
cannot interrupt C code. Here the call runs in a persistent helper process instead; if it
overruns, the helper is killed (a hard stop, whatever it was doing) and a fresh one starts
on the next call. The calling thread only waits on a pipe, so this works from any thread.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

#: How long a new helper may take to import and warm up before it is given up on.
STARTUP_TIMEOUT_S = 120.0


class SampleTimeout(Exception):
    """A sample's computation ran past its time budget and was killed."""


def _serve(conn: Connection, warmup: Callable[[], Any] | None) -> None:
    from reward_server.lifecycle import exit_with_parent

    exit_with_parent()  # a time-limit helper busy with a long call would outlive a killed worker otherwise
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
        self._proc = ctx.Process(target=_serve, args=(child, self._warmup), daemon=True, name="reward-time-limit")
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(STARTUP_TIMEOUT_S) or parent.recv() != "ready":
            self.close()
            raise RuntimeError(f"time-limit helper process did not start within {STARTUP_TIMEOUT_S} s")
        return parent

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        conn = self._conn if self._proc is not None and self._proc.is_alive() else self._start()
        try:
            conn.send((fn, args))
            if not conn.poll(timeout):
                raise SampleTimeout(f"timed out after {timeout:g} s")
            ok, value = conn.recv()
        except BaseException:
            # Overrun, or interrupted (a budget alarm, a shutdown): the helper may still be
            # working on this call, and its late answer must never reach the next caller.
            self.close()
            raise
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


_budget_s = 0.0
#: When the sample now running started (time.monotonic), for per-sample budgets; None otherwise.
_sample_started: float | None = None


def _on_alarm(signum: int, frame: object) -> None:
    if _sample_started is None or time.monotonic() - _sample_started >= _budget_s:
        raise SampleTimeout(f"timed out after {_budget_s:g} s")


def _install_handler() -> None:
    # getsignal reads Python's own table (no system call); someone else may have taken SIGALRM since.
    if signal.getsignal(signal.SIGALRM) is not _on_alarm:
        signal.signal(signal.SIGALRM, _on_alarm)


@contextlib.contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Raise :class:`SampleTimeout` inside the block once ``seconds`` have passed.

    Uses SIGALRM, so it works on the main thread of a process, which is where the scoring
    worker processes run their tasks; elsewhere (thread mode) it does nothing. Python code
    and the ``re`` engine check for signals, so a pathological regex is cut off too; C code
    that never checks needs :class:`TimeLimitedRunner` instead. The handler is installed
    once per process and each block only arms and disarms the timer: this runs per sample.

    Example:
        >>> import time
        >>> try:
        ...     with time_budget(0.05):
        ...         time.sleep(1)
        ... except SampleTimeout as exc:
        ...     print(exc)
        timed out after 0.05 s
    """
    global _budget_s
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    _install_handler()
    _budget_s = seconds
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _start_sample() -> None:
    global _sample_started
    _sample_started = time.monotonic()


def _no_budget() -> None:
    return None


@contextlib.contextmanager
def sample_budgets(seconds: float | None) -> Iterator[Callable[[], None]]:
    """Per-sample budgets for a loop over samples: call the yielded function as each sample starts.

    Arming a timer per sample costs two system calls each; instead one periodic timer ticks
    every quarter budget and interrupts the sample that has run for a whole budget. A sample is
    cut off after between 1 and 1.25 budgets. Same thread rules as :func:`time_budget`.

    Example:
        >>> import time
        >>> with sample_budgets(0.2) as start_sample:
        ...     for pause in (0.05, 5):
        ...         try:
        ...             start_sample()
        ...             time.sleep(pause)
        ...             print("done")
        ...         except SampleTimeout as exc:
        ...             print(exc)
        done
        timed out after 0.2 s
    """
    global _budget_s, _sample_started
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield _no_budget
        return
    _install_handler()
    _budget_s = seconds
    _sample_started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds / 4, seconds / 4)
    try:
        yield _start_sample
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _sample_started = None
