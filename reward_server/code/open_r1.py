"""open-r1's code rewards, with open-r1's numbers: ``open_r1_code``, ``open_r1_binary_code``, ``open_r1_code_format``.

Read from ``src/open_r1/rewards.py`` of huggingface/open-r1 at commit 1416fa0 (``code_reward``'s evaluation script,
``binary_code_reward``, ``get_code_format_reward``, ``extract_code``); the programs run in this server's engine
(the local sandbox by default) instead of E2B, with the script's own rules. Quirks kept, and documented in the
README: Python whatever the problem's language; zip line comparison (printing only the first expected line passes);
a test over the time limit scores the whole sample 0; tests that are not text (function calls) score 0.
``tests/test_code_rewards.py`` checks the numbers against a copy of open-r1's script.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from reward_server.code.compare import open_r1_lines_match
from reward_server.code.execution import RunLimits, TestInput, TestRun, Verdict
from reward_server.code.extract import open_r1_extract_code
from reward_server.code.formats import TestCase
from reward_server.code.rewards import CODE_REWARD_ARGS, limited, load_problem, run_program, summarize
from reward_server.declare import sample_reward
from reward_server.registry import SampleScore

#: open-r1's ``binary_code_reward`` threshold.
BINARY_THRESHOLD = 0.99
#: Extra column of the open-r1 rewards: each sample's verdicts in short.
OPEN_R1_VERDICTS = "open_r1_code_verdicts"


def open_r1_pass_rate(
    completion: str, verification_info: str, *, time_limit_s: float, memory_mb: int, max_tests: int, engine: str
) -> tuple[float, str]:
    """open-r1's ``code_reward`` for one sample: (pass rate, verdicts in short).

    open-r1's evaluation script, test by test: ``python3 -c <last python block>`` with the test's ``input`` on
    stdin (the test's type is ignored), a non-zero exit fails the test, else the test passes when every pair of
    zip(stripped stdout lines, expected lines) is equal after strip(). A test over the time limit raises
    ``TimeoutExpired`` in open-r1's script, which then prints nothing: the sample scores 0 (E2B's provider turns a
    failed script into 0.0). Test data that is not text (function-call tests' JSON arguments) makes the script
    raise too: 0.
    """
    tests = limited(load_problem(verification_info), max_tests)
    if any(not isinstance(t.raw_input, str) or not isinstance(t.raw_output, str) for t in tests):
        return 0.0, summarize(["not run"] * len(tests), "test data that is not text fails open-r1's script: 0")
    code = open_r1_extract_code(completion, "python")
    if not code:  # python3 -c "" exits 0 and prints nothing: graded as such, nothing to run
        runs = [TestRun(Verdict.OK, "")] * len(tests)
    else:
        runs = _open_r1_runs(engine, code, tests, RunLimits(time_limit_s=time_limit_s, memory_mb=memory_mb))
    verdicts = []
    for test, run in zip(tests, runs, strict=False):
        if run.verdict is Verdict.OK:
            verdicts.append("passed" if open_r1_lines_match(run.stdout, test.raw_output) else "wrong answer")
        else:
            verdicts.append(str(run.verdict))
    if verdicts and verdicts[-1] == str(Verdict.TIME_LIMIT):
        verdicts += ["not run"] * (len(tests) - len(verdicts))
        return 0.0, summarize(verdicts, "a test over the time limit fails open-r1's script: 0")
    return sum(v == "passed" for v in verdicts) / len(tests), summarize(verdicts)


def _open_r1_runs(engine: str, code: str, tests: Sequence[TestCase], limits: RunLimits) -> list[TestRun]:
    """Every test's run until the first time-out (which ends open-r1's script); one sandbox per stretch of tests.

    The engine stops at any failed run; a runtime error does not end open-r1's script, so the run resumes after it.
    """
    runs: list[TestRun] = []
    while len(runs) < len(tests):
        rest = [TestInput(stdin=t.raw_input) for t in tests[len(runs) :]]
        for run in run_program(engine, "python", code, rest, limits, stop=True):
            if run.verdict is Verdict.NOT_RUN:
                break
            runs.append(run)
            if run.verdict is Verdict.TIME_LIMIT:
                return runs
    return runs


@sample_reward("open_r1_code", **CODE_REWARD_ARGS)
def open_r1_code(
    completion: str,
    verification_info: str,
    *,
    time_limit_s: float = 5.0,
    memory_mb: int = 512,
    max_tests: int = 0,
    engine: str = "",
) -> SampleScore:
    """open-r1's code_reward: pass rate of the last python code block, compared as open-r1 zips lines (quirks kept).

    Quirks kept for open-r1's numbers: Python whatever the problem's language; printing only the first expected
    line passes (zip stops at the shorter side); a test over the time limit scores the whole sample 0; tests that
    are not text (function calls) score 0.

    Args:
        verification_field: sample field holding the tests (open-r1's verification_info; other formats are read as
            their stdin tests).
        time_limit_s: limit per test, in seconds (open-r1: 5).
        memory_mb: address-space limit of the program, in MiB.
        max_tests: run at most this many tests, the first ones (0 = all, as open-r1).
        engine: engine that runs the program: local, sandboxfusion or piston (empty = the server's code_engine).

    Example:
        >>> open_r1_code("```py\\nprint(1)\\n```", '{"test_cases": [{"input": "", "output": "1"}]}').score
        0.0
    """
    score, verdicts = open_r1_pass_rate(
        completion,
        verification_info,
        time_limit_s=time_limit_s,
        memory_mb=memory_mb,
        max_tests=max_tests,
        engine=engine,
    )
    return SampleScore(score, {OPEN_R1_VERDICTS: verdicts})


@sample_reward("open_r1_binary_code", **CODE_REWARD_ARGS)
def open_r1_binary_code(
    completion: str,
    verification_info: str,
    *,
    time_limit_s: float = 5.0,
    memory_mb: int = 512,
    max_tests: int = 0,
    engine: str = "",
) -> SampleScore:
    """open-r1's binary_code_reward: 1 if open_r1_code's pass rate is above 0.99, else 0.

    Args:
        verification_field: sample field holding the tests (as open_r1_code).
        time_limit_s: limit per test, in seconds (open-r1: 5).
        memory_mb: address-space limit of the program, in MiB.
        max_tests: run at most this many tests, the first ones (0 = all, as open-r1).
        engine: engine that runs the program: local, sandboxfusion or piston (empty = the server's code_engine).

    Example:
        >>> open_r1_binary_code("", '{"test_cases": [{"input": "", "output": ""}]}').score
        1.0
    """
    score, verdicts = open_r1_pass_rate(
        completion,
        verification_info,
        time_limit_s=time_limit_s,
        memory_mb=memory_mb,
        max_tests=max_tests,
        engine=engine,
    )
    return SampleScore(1.0 if score > BINARY_THRESHOLD else 0.0, {OPEN_R1_VERDICTS: verdicts})


def _language_of(verification_info: str) -> str | None:
    try:
        value = json.loads(verification_info)
    except (json.JSONDecodeError, TypeError):
        return None
    language = value.get("language") if isinstance(value, dict) else None
    return language if isinstance(language, str) and language else None


@sample_reward("open_r1_code_format", verification_field="verification_info")
def open_r1_code_format(completion: str, verification_info: str, *, language: str = "python") -> float:
    """1 if the completion matches open-r1's code format regex (think, then an answer holding a LANG block), else 0.

    open-r1's ``get_code_format_reward``: ``^<think>\\n.*?\\n</think>\\n<answer>\\n.*?```{lang}.*?```.*?\\n</answer>$``
    (DOTALL, MULTILINE, matched at the start), LANG the sample's language: ``verification_info.language`` here
    (open-r1 reads a ``language`` column), else the ``language`` param. LANG goes into the pattern unescaped, as in
    open-r1.

    Args:
        verification_field: sample field holding the problem (its language is read, nothing else).
        language: language when the sample names none (open-r1's code_language).

    Example:
        >>> open_r1_code_format("<think>\\nhm\\n</think>\\n<answer>\\n```python\\nprint(1)\\n```\\n</answer>", "{}")
        1.0
        >>> open_r1_code_format("<think>\\nhm\\n</think>\\n<answer>\\n```py\\n1\\n```\\n</answer>", "{}")
        0.0
    """
    sample_language = _language_of(verification_info) or language
    pattern = rf"^<think>\n.*?\n</think>\n<answer>\n.*?```{sample_language}.*?```.*?\n</answer>$"
    return 1.0 if re.match(pattern, completion, re.DOTALL | re.MULTILINE) else 0.0
