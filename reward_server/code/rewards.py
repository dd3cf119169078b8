"""The code-execution rewards: run the completion's program against the sample's tests and grade it here.

Strict rewards (``code_pass_rate``, ``code_passed``) find the program with :func:`~.extract.find_program`, compare
with :func:`~.compare.output_matches` / :func:`~.compare.value_matches`, and cannot be passed by printing part of
the answer. open-r1's rewards (``open_r1_code``, ``open_r1_binary_code``, ``open_r1_code_format``) give open-r1's
numbers, quirks included: ``src/open_r1/rewards.py`` of huggingface/open-r1 at commit 1416fa0 (``code_reward``'s
evaluation script, ``binary_code_reward``, ``get_code_format_reward``, ``extract_code``), run through this server's
sandbox instead of E2B. ``tests/test_code_rewards.py`` checks them against a copy of that script.

Scores versus errors: what the program does (no code, compile error, crash, wrong answer, time or memory limit)
scores what the reward defines; an engine that fails (sandbox cannot start, remote engine down) makes the sample
NaN with an UNAVAILABLE note naming the engine, never 0. A problem in a language this server does not run is NaN
with a not-applicable note. Each sample's verdicts go to an extra column (``3/5 passed; #4 wrong answer; #5 time
limit``). A malformed test column refuses the request up front (INVALID_ARGUMENT naming the sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reward_server import settings
from reward_server.code import remote
from reward_server.code.compare import COMPARISONS, output_matches, value_matches
from reward_server.code.engines import CODE_REWARDS as SWITCHED_TOGETHER
from reward_server.code.engines import get_engine
from reward_server.code.execution import EngineUnavailable, RunLimits, TestInput, TestRun, Verdict
from reward_server.code.extract import UnsupportedLanguage, find_program
from reward_server.code.formats import FormatError, Problem, TestCase, check_problem, parse_problem
from reward_server.code.languages import LANGUAGES
from reward_server.declare import sample_reward
from reward_server.errors import Unavailable
from reward_server.outcomes import NoteKind
from reward_server.registry import SampleScore

#: Every reward of this module (the server switches them off together when code execution is off or unsafe).
CODE_REWARDS = ("code_pass_rate", "code_passed", "open_r1_code", "open_r1_binary_code", "open_r1_code_format")
SWITCHED_TOGETHER.update(CODE_REWARDS)
#: Engine names a request may pick ("" = the server's ``code_engine``).
ENGINE_NAMES = ("", "local", remote.SandboxFusionEngine.name, remote.PistonEngine.name)
#: Extra column of the strict rewards: each sample's verdicts in short.
VERDICTS = "code_verdicts"
_ALIASES = {tag: lang.name for lang in LANGUAGES.values() for tag in (lang.name, *lang.aliases)}
VERIFICATION_CHECKS = {"verification_field": check_problem}


def code_params(
    *,
    time_limit_s: float,
    memory_mb: int,
    engine: str,
    max_tests: int = 0,
    comparison: str = "lines",
    tolerance: float = 0.0,
    **_: Any,
) -> None:
    """Param values the code rewards refuse up front (ValueError naming the param).

    Example:
        >>> code_params(time_limit_s=0, memory_mb=512, engine="")
        Traceback (most recent call last):
        ...
        ValueError: time_limit_s must be in (0, 300], got 0
    """
    if not 0 < time_limit_s <= 300:
        raise ValueError(f"time_limit_s must be in (0, 300], got {time_limit_s:g}")
    if not 16 <= memory_mb <= 65536:
        raise ValueError(f"memory_mb must be in [16, 65536], got {memory_mb}")
    if max_tests < 0:
        raise ValueError(f"max_tests must be 0 (all) or positive, got {max_tests}")
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {', '.join(COMPARISONS)}, got {comparison!r}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance:g}")
    if engine not in ENGINE_NAMES:
        raise ValueError(f"engine must be one of local, sandboxfusion, piston (or empty: the server's), got {engine!r}")


#: How every test-running code reward is declared: its params checked, its test column checked up front.
#: The engine bounds each sample by its tests' limits, so the server's per-sample budget does not apply.
CODE_REWARD_ARGS: dict[str, Any] = {
    "check": code_params,
    "check_fields": VERIFICATION_CHECKS,
    "own_time_limits": True,
    "verification_field": "verification_info",
}


def summarize(verdicts: Sequence[str], why: str = "") -> str:
    """One sample's verdicts in short: passes, then failures by test number (runs of one verdict as ranges).

    Example:
        >>> summarize(["passed", "passed", "passed", "wrong answer", "time limit"])
        '3/5 passed; #4 wrong answer; #5 time limit'
        >>> summarize(["runtime error"] + ["not run"] * 3)
        '0/4 passed; #1 runtime error; #2-#4 not run'
    """
    n = len(verdicts)
    parts = [f"{sum(v == 'passed' for v in verdicts)}/{n} passed"]
    if why:
        parts.append(why)
    failures, i = [], 0
    while i < n:
        j = i
        while j + 1 < n and verdicts[j + 1] == verdicts[i]:
            j += 1
        if verdicts[i] != "passed":
            failures.append(f"#{i + 1} {verdicts[i]}" if i == j else f"#{i + 1}-#{j + 1} {verdicts[i]}")
        i = j + 1
    if len(failures) > 6:
        failures = [*failures[:6], f"+{len(failures) - 6} more"]
    return "; ".join(parts + failures)


def run_program(
    engine: str, language: str, source: str, tests: Sequence[TestInput], limits: RunLimits, stop: bool
) -> list[TestRun]:
    """Run ``source`` on ``tests`` in the named engine; an engine failure is :class:`Unavailable` naming the engine.

    Only :class:`EngineUnavailable` is the engine's failure. A ``ValueError`` from an engine (a language it does not
    run, a function-call test outside Python) means the caller asked for what the checks up front exclude: it stays
    an error of the reward, never an UNAVAILABLE that would spare the program its score.
    """
    try:
        runner = get_engine(engine or None)
        return runner.run(language, source, tests, limits, stop_on_failure=stop)
    except EngineUnavailable as exc:
        raise Unavailable(f"engine {engine or settings.current().code.code_engine}: {exc}") from None


def load_problem(verification_info: str) -> Problem:
    """The sample's tests (a malformed column is a ValueError: the request's check normally refused it)."""
    try:
        return parse_problem(verification_info)
    except FormatError as exc:  # refused up front; here only when a caller skipped the request's checks
        raise ValueError(f"verification_info: {exc}") from None


def limited(problem: Problem, max_tests: int) -> tuple[TestCase, ...]:
    """The first ``max_tests`` tests (0 = all)."""
    return problem.tests[:max_tests] if max_tests else problem.tests


def _verdict(test: TestCase, run: TestRun, comparison: str, tolerance: float) -> str:
    if run.verdict is not Verdict.OK:
        return str(run.verdict)
    if test.is_call:
        ok = value_matches(run.stdout, test.expected, test.also, tolerance)
    else:
        ok = output_matches(run.stdout, test.expected, comparison, tolerance)
    return "passed" if ok else "wrong answer"


def strict_verdicts(
    completion: str,
    verification_info: str,
    *,
    time_limit_s: float,
    memory_mb: int,
    max_tests: int,
    comparison: str,
    tolerance: float,
    engine: str,
    stop_on_failure: bool = False,
) -> tuple[list[str], str]:
    """Each test's verdict for the completion's program, and a reason when nothing ran (no code)."""
    problem = load_problem(verification_info)
    tests = limited(problem, max_tests)
    program = find_program(completion, problem.language, _ALIASES)
    if program.language is None or not program.source.strip():
        return ["not run"] * len(tests), f"no code: {program.problem or 'the code block is empty'}"
    limits = RunLimits(time_limit_s=time_limit_s, memory_mb=memory_mb)
    runs = run_program(engine, program.language, program.source, [t.run for t in tests], limits, stop_on_failure)
    verdicts: list[str] = []
    for test, run in zip(tests, runs, strict=True):
        # The engine stops only at a failed run; a wrong answer is known here, and stops the rest as well.
        stopped = stop_on_failure and any(v != "passed" for v in verdicts[-1:])
        verdicts.append("not run" if stopped else _verdict(test, run, comparison, tolerance))
    return verdicts, ""


def _strict(completion: str, verification_info: str, score_of: Any, **params: Any) -> SampleScore:
    try:
        verdicts, why = strict_verdicts(completion, verification_info, **params)
    except UnsupportedLanguage as exc:
        return SampleScore(None, note=str(exc), kind=NoteKind.NOT_APPLICABLE)
    return SampleScore(score_of(verdicts), {VERDICTS: summarize(verdicts, why)})


@sample_reward("code_pass_rate", **CODE_REWARD_ARGS)
def code_pass_rate(
    completion: str,
    verification_info: str,
    *,
    time_limit_s: float = 5.0,
    memory_mb: int = 512,
    max_tests: int = 0,
    comparison: str = "lines",
    tolerance: float = 0.0,
    engine: str = "",
) -> SampleScore:
    """Share of the tests the completion's program passes, compared strictly (printing part of the answer fails).

    The program is the last fenced block in the problem's language (``verification_info.language``, else the
    block's tag); an output matches when it has as many lines as the expected one and each line is equal after
    trimming trailing whitespace (trailing blank lines ignored); a function-call test compares JSON values.

    Args:
        verification_field: sample field holding the tests (open-r1's verification_info, APPS/TACO/LiveCodeBench
            inputs/outputs, or code_contests' public/private/generated tests; object or JSON text).
        time_limit_s: CPU and wall-clock limit per test, in seconds.
        memory_mb: address-space limit of the program, in MiB.
        max_tests: run at most this many tests, the first ones (0 = all).
        comparison: lines (the strict rule above), tokens (whitespace-separated tokens), or exact (byte for byte).
        tolerance: numbers match within tol × max(1, |expected|) (0 = exact text).
        engine: engine that runs the program: local, sandboxfusion or piston (empty = the server's code_engine).

    Example:
        >>> code_pass_rate("no code here", '{"inputs": ["1\\\\n"], "outputs": ["1\\\\n"]}').extras
        {'code_verdicts': '0/1 passed; no code: no fenced code block; #1 not run'}
    """
    return _strict(
        completion,
        verification_info,
        lambda verdicts: sum(v == "passed" for v in verdicts) / len(verdicts),
        time_limit_s=time_limit_s,
        memory_mb=memory_mb,
        max_tests=max_tests,
        comparison=comparison,
        tolerance=tolerance,
        engine=engine,
    )


@sample_reward("code_passed", **CODE_REWARD_ARGS)
def code_passed(
    completion: str,
    verification_info: str,
    *,
    time_limit_s: float = 5.0,
    memory_mb: int = 512,
    max_tests: int = 0,
    comparison: str = "lines",
    tolerance: float = 0.0,
    engine: str = "",
    stop_on_failure: bool = True,
) -> SampleScore:
    """1 if the completion's program passes every test (compared as code_pass_rate does), else 0.

    Args:
        verification_field: sample field holding the tests (as code_pass_rate).
        time_limit_s: CPU and wall-clock limit per test, in seconds.
        memory_mb: address-space limit of the program, in MiB.
        max_tests: run at most this many tests, the first ones (0 = all).
        comparison: lines, tokens or exact (as code_pass_rate).
        tolerance: numbers match within tol × max(1, |expected|) (0 = exact text).
        engine: engine that runs the program: local, sandboxfusion or piston (empty = the server's code_engine).
        stop_on_failure: stop at the first failed test (the score is the same; the rest show as not run).

    Example:
        >>> code_passed("```python\\n```", '{"inputs": ["1\\\\n"], "outputs": ["1\\\\n"]}').score
        0.0
    """
    return _strict(
        completion,
        verification_info,
        lambda verdicts: float(all(v == "passed" for v in verdicts)),
        time_limit_s=time_limit_s,
        memory_mb=memory_mb,
        max_tests=max_tests,
        comparison=comparison,
        tolerance=tolerance,
        engine=engine,
        stop_on_failure=stop_on_failure,
    )
