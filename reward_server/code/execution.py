"""What every code engine takes and returns: tests to run, limits, and one verdict per test.

These plain types are shared by the local bubblewrap sandbox (:mod:`reward_server.code.sandbox`), the remote
engines and the rewards. An engine only *runs* programs; it never sees expected outputs (a program could read them
out of the harness's memory), so comparing outputs is the server's job and ``Verdict.OK`` means only "exited 0".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True)
class TestInput:
    """What one test feeds the program; expected outputs never go here.

    A stdin test writes ``stdin`` to the program. A function-call test (``fn_name`` set) imports the program and
    calls ``fn_name(*args)`` with ``args`` as JSON values; the run's stdout is then the JSON of the return value.

    Example:
        >>> TestInput(stdin="1 2\\n").fn_name is None
        True
    """

    __test__ = False  # not a pytest class

    stdin: str = ""
    fn_name: str | None = None
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class RunLimits:
    """Per-test limits (time is both CPU and wall clock); the compile step has its own time limit.

    Example:
        >>> RunLimits().memory_mb
        512
    """

    time_limit_s: float = 5.0
    memory_mb: int = 512
    output_bytes: int = 1 << 20
    compile_time_limit_s: float = 30.0


class Verdict(StrEnum):
    """How one test run ended, before the server compares its output."""

    __test__ = False

    OK = "ok"  # exited 0 (output still to be compared by the server)
    RUNTIME_ERROR = "runtime error"  # non-zero exit or signal
    TIME_LIMIT = "time limit"
    MEMORY_LIMIT = "memory limit"
    OUTPUT_LIMIT = "output limit"
    COMPILE_ERROR = "compile error"
    NOT_RUN = "not run"  # skipped after a failure (stop_on_failure)


@dataclass(frozen=True)
class TestRun:
    """One test's run: its verdict, its stdout (for a function-call test, the JSON text of the return value)."""

    __test__ = False

    verdict: Verdict
    stdout: str
    stderr_tail: str = ""  # last ~500 chars, for notes
    exit_code: int | None = None
    elapsed_s: float = 0.0


class EngineUnavailable(Exception):
    """Infrastructure failure (sandbox cannot start, engine down or erroring): the sample is NaN, kind UNAVAILABLE,
    never a wrong answer. The message names the engine and the error."""


class Engine(Protocol):
    """Runs one completion's program against its tests.

    One sandbox per completion runs all its tests, each test in a fresh child process; a compiled language is
    compiled once. With ``stop_on_failure`` the tests after the first non-OK verdict are ``NOT_RUN`` (comparing the
    output of OK runs is the server's job, so the engine stops only on non-OK verdicts).
    """

    name: str  # "local", "sandboxfusion", "piston", "unsafe-local"

    def run(
        self,
        language: str,
        source: str,
        tests: Sequence[TestInput],
        limits: RunLimits,
        stop_on_failure: bool = False,
    ) -> list[TestRun]: ...
