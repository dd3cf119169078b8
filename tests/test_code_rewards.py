# ruff: noqa: E501 - open-r1's grader is copied below as it is
"""The code rewards served by a real server (a process) running programs in the real local sandbox.

The shipped problems (``reward_server/code/problems.jsonl``: 20 problems, stdin and function-call tests, Python and
C++, a reference solution and wrong ones each, with the number of tests each wrong one passes, counted by hand)
are scored by the five rewards: the strict ones against those hand counts, the ``open_r1_*`` ones against a
reference implementation of open-r1's grader copied below from huggingface/open-r1's main branch at commit
1416fa0 (2026-04-02), ``src/open_r1/rewards.py`` (Apache-2.0): ``extract_code``, ``code_reward``'s evaluation
script and how it is built, ``binary_code_reward``'s threshold, ``get_code_format_reward``'s pattern, and
``E2BProvider._run_script``'s reading of the result (a script that raises scores 0.0). E2B's Jupyter kernel runs the
indented script (IPython strips the common indentation) and returns its last expression; ``run_like_e2b`` does the
same here. That grader runs our own hand-written solutions with ``python3 -c`` outside any sandbox, as open-r1 does
inside E2B's.
"""

from __future__ import annotations

import ast
import base64
import json
import math
import pickle
import re
import textwrap
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import REPO, RunningServer, start_server, stop_server

from trainer_client.client import RewardClient
from trainer_client.errors import RewardServiceError
from trainer_client.outcomes import Outcome

PROBLEMS = [json.loads(line) for line in (REPO / "reward_server/code/problems.jsonl").read_text().splitlines()]
BY_ID = {p["id"]: p for p in PROBLEMS}
CODE_REWARDS = ["code_pass_rate", "code_passed", "open_r1_code", "open_r1_binary_code", "open_r1_code_format"]

# ------------------------------------------------------------ open-r1's grader (copied, see above)


def extract_code(completion: str, language: str | None = "python") -> str:
    if language is None:
        return ""
    pattern = re.compile(rf"```{language}\n(.*?)```", re.DOTALL)
    matches = pattern.findall(completion)
    extracted_answer = matches[-1] if len(matches) >= 1 else ""
    return extracted_answer


evaluation_script_template = """
    import subprocess
    import json

    def evaluate_code(code, test_cases):
        passed = 0
        total = len(test_cases)
        exec_timeout = 5

        for case in test_cases:
            process = subprocess.run(
                ["python3", "-c", code],
                input=case["input"],
                text=True,
                capture_output=True,
                timeout=exec_timeout
            )

            if process.returncode != 0:  # Error in execution
                continue

            output = process.stdout.strip()

            # TODO: implement a proper validator to compare against ground truth. For now we just check for exact string match on each line of stdout.
            all_correct = True
            for line1, line2 in zip(output.split('\\n'), case['output'].split('\\n')):
                all_correct = all_correct and line1.strip() == line2.strip()

            if all_correct:
                passed += 1

        success_rate = (passed / total)
        return success_rate

    code_snippet = {code}
    test_cases = json.loads({test_cases})

    evaluate_code(code_snippet, test_cases)
    """

BINARY_THRESHOLD = 0.99


def code_format_pattern(sample_language: str) -> str:
    return rf"^<think>\n.*?\n</think>\n<answer>\n.*?```{sample_language}.*?```.*?\n</answer>$"


def run_like_e2b(script: str) -> float:
    """E2B's kernel: run the cell, take its last expression's value; ``float(execution.text)``, 0.0 on any error."""
    try:
        tree = ast.parse(textwrap.dedent(script))
        last = tree.body.pop()
        scope: dict[str, Any] = {}
        exec(compile(tree, "<cell>", "exec"), scope)
        return float(eval(compile(ast.Expression(last.value), "<cell>", "eval"), scope))
    except Exception:  # noqa: BLE001 - E2BProvider._run_script: any failure of the script is 0.0
        return 0.0


def open_r1_code_reward(completion: str, info: dict) -> float:
    code = extract_code(completion)
    script = evaluation_script_template.format(
        code=json.dumps(code), test_cases=json.dumps(json.dumps(info["test_cases"]))
    )
    return run_like_e2b(script)


# ------------------------------------------------------------ the samples


def completion_of(code: str, language: str) -> str:
    """A completion in open-r1's answer format with the program in a fenced block tagged by its language."""
    return f"<think>\nI read the input and compute.\n</think>\n<answer>\n```{language}\n{code}```\n</answer>"


def solutions() -> Iterator[tuple[dict, str, str, int]]:
    """(problem, what the solution is, its completion, tests it passes under strict comparison) for every solution."""
    for problem in PROBLEMS:
        language = problem["verification_info"]["language"]
        total = len(problem["verification_info"]["test_cases"])
        yield problem, "reference", completion_of(problem["reference"], language), total
        for wrong in problem["wrong"]:
            yield problem, wrong["kind"], completion_of(wrong["code"], language), wrong["strict_passes"]


SOLUTIONS = list(solutions())
#: Per-test limit here: the infinite loop of prefix_sums costs 3 × this in code_pass_rate, three times the server's
#: sample budget (SAMPLE_BUDGET_S): code rewards bound their own time, so it still scores its time-limit verdicts (0),
#: never a NaN that would spare it the penalty. (open-r1's script waits 5 s; a program that never ends scores 0.)
TIME_LIMIT_S = 1.0
SAMPLE_BUDGET_S = 1.0


def sample(completion: str, info: Any) -> dict:
    return {"prompt": "solve it", "completion": completion, "fields": {"verification_info": info}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("code"), "--workers", "2", config=f"sample_timeout_s: {SAMPLE_BUDGET_S}"
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[RewardClient]:
    with RewardClient(server.address, deadline_s=120) as reward_client:
        yield reward_client


@pytest.fixture(scope="module")
def all_scored(client: RewardClient) -> Any:
    """Every shipped solution scored by the five rewards in one request."""
    rewards = [
        {"name": "code_pass_rate", "params": {"time_limit_s": TIME_LIMIT_S}},
        {"name": "code_passed", "params": {"time_limit_s": TIME_LIMIT_S}},
        {"name": "open_r1_code", "params": {"time_limit_s": TIME_LIMIT_S}},
        {"name": "open_r1_binary_code", "params": {"time_limit_s": TIME_LIMIT_S}},
        "open_r1_code_format",
    ]
    result = client.score([sample(c, p["verification_info"]) for p, _, c, _ in SOLUTIONS], rewards)
    return {r.name: r for r in result.rewards}


@pytest.fixture(scope="module")
def open_r1_numbers() -> list[float]:
    """open-r1's grader on every shipped solution (four at a time: it waits on its subprocesses)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda s: open_r1_code_reward(s[2], s[0]["verification_info"]), SOLUTIONS))


def test_catalogue_lists_the_code_rewards_with_their_params(client: RewardClient) -> None:
    infos = {info.name: info for info in client.list_rewards()}
    for name in CODE_REWARDS:
        assert infos[name].available, infos[name].unavailable_reason
        assert infos[name].fields == ["verification_info"]
    params = {p.name for p in infos["code_pass_rate"].params}
    assert {"time_limit_s", "memory_mb", "max_tests", "comparison", "tolerance", "engine"} <= params
    assert "stop_on_failure" in {p.name for p in infos["code_passed"].params}


def test_strict_rewards_score_every_shipped_solution_as_counted_by_hand(all_scored: dict) -> None:
    rate, passed = all_scored["code_pass_rate"], all_scored["code_passed"]
    for i, (problem, what, _, passes) in enumerate(SOLUTIONS):
        total = len(problem["verification_info"]["test_cases"])
        where = f"{problem['id']} {what}"
        assert rate.scores[i] == pytest.approx(passes / total), where
        assert passed.scores[i] == (1.0 if passes == total else 0.0), where
        assert rate.extra_columns["code_verdicts"][i].startswith(f"{passes}/{total} passed"), where
    assert rate.counts.scored == len(SOLUTIONS) and passed.counts.scored == len(SOLUTIONS)


def test_verdict_columns_say_what_failed(all_scored: dict) -> None:
    verdicts = all_scored["code_pass_rate"].extra_columns["code_verdicts"]
    stopped = all_scored["code_passed"].extra_columns["code_verdicts"]
    at = {(p["id"], what): i for i, (p, what, _, _) in enumerate(SOLUTIONS)}
    assert verdicts[at["sum_two", "wrong answer"]] == "3/4 passed; #4 wrong answer"
    assert verdicts[at["gcd_pairs", "runtime error"]] == "2/3 passed; #3 runtime error"
    assert verdicts[at["prefix_sums", "time limit"]] == "0/3 passed; #1-#3 time limit"
    assert verdicts[at["sum_two_cpp", "compile error"]] == "0/3 passed; #1-#3 compile error"
    assert verdicts[at["is_anagram", "wrong type"]] == "0/3 passed; #1-#3 wrong answer"
    # code_passed stops at the first failure: the rest are not run.
    assert stopped[at["prefix_sums", "time limit"]] == "0/3 passed; #1 time limit; #2-#3 not run"
    assert stopped[at["max_of_list", "wrong answer"]] == "1/3 passed; #2 wrong answer; #3 not run"


def test_open_r1_rewards_give_open_r1s_numbers(all_scored: dict, open_r1_numbers: list[float]) -> None:
    code, binary, fmt = all_scored["open_r1_code"], all_scored["open_r1_binary_code"], all_scored["open_r1_code_format"]
    for i, (problem, what, completion, _) in enumerate(SOLUTIONS):
        info = problem["verification_info"]
        expected = open_r1_numbers[i]
        where = f"{problem['id']} {what}"
        assert code.scores[i] == expected, where
        assert binary.scores[i] == (1.0 if expected > BINARY_THRESHOLD else 0.0), where
        matched = re.match(code_format_pattern(info["language"]), completion, re.DOTALL | re.MULTILINE)
        assert fmt.scores[i] == (1.0 if matched else 0.0), where
    # open-r1's quirks, as its own grader gives them: C++ and function-call problems score 0 whatever the program.
    cpp = [i for i, (p, what, _, _) in enumerate(SOLUTIONS) if p["id"] == "sum_two_cpp" and what == "reference"]
    calls = [i for i, (p, what, _, _) in enumerate(SOLUTIONS) if p["id"] == "two_sum" and what == "reference"]
    assert code.scores[cpp[0]] == 0.0 and code.scores[calls[0]] == 0.0


def test_printing_only_the_first_expected_line(all_scored: dict, open_r1_numbers: list[float]) -> None:
    """The exploit: strict rewards fail it; open_r1_code passes it, as open-r1's own grader does."""
    exploits = [(i, p) for i, (p, what, _, _) in enumerate(SOLUTIONS) if what == "first line only"]
    assert len(exploits) >= 4
    for i, problem in exploits:
        assert all_scored["code_passed"].scores[i] == 0.0, problem["id"]
    fizzbuzz = next(i for i, p in exploits if p["id"] == "fizzbuzz")
    assert all_scored["code_pass_rate"].scores[fizzbuzz] == 0.0
    assert all_scored["open_r1_code"].scores[fizzbuzz] == open_r1_numbers[fizzbuzz] == 1.0


def test_tolerance_and_comparison_params(client: RewardClient) -> None:
    circle = BY_ID["circle_area"]
    rounding = completion_of(circle["wrong"][0]["code"], "python")
    tokens = completion_of("input()\nprint('  '.join(map(str, sorted(map(int, input().split())))))\n", "python")
    result = client.score(
        [sample(rounding, circle["verification_info"]), sample(tokens, BY_ID["sort_numbers"]["verification_info"])],
        [
            {"name": "code_pass_rate", "params": {"tolerance": 1e-5}},
            {"name": "code_pass_rate", "params": {"comparison": "tokens"}},
            "code_pass_rate",
        ],
    )
    with_tolerance, by_tokens, strict = (r.scores for r in result.rewards)
    assert with_tolerance[0] == 1.0 and strict[0] == pytest.approx(1 / 3)  # 3.14159 is within 1e-5 of π
    # Two spaces between numbers: the lines differ, the tokens are equal (the one-number test passes either way).
    assert by_tokens[1] == 1.0 and strict[1] == pytest.approx(1 / 3)


def apps_format(info: dict) -> str:
    tests = info["test_cases"]
    return json.dumps({"inputs": [t["input"] for t in tests], "outputs": [t["output"] for t in tests]})


def contests_format(info: dict) -> dict:
    tests = info["test_cases"]
    return {
        "public_tests": {"input": [tests[0]["input"]], "output": [tests[0]["output"]]},
        "private_tests": {"input": [t["input"] for t in tests[1:]], "output": [t["output"] for t in tests[1:]]},
    }


def test_every_format_scores_the_same(client: RewardClient) -> None:
    problem = BY_ID["palindromes"]
    info = problem["verification_info"]
    call = BY_ID["two_sum"]["verification_info"]  # arguments and [result] as JSON text, as open-r1's dataset has them
    typed_call = {
        "language": "python",
        "test_cases": [
            {**t, "input": json.loads(t["input"]), "output": json.loads(t["output"])} for t in call["test_cases"]
        ],
    }
    lcb_call = json.dumps(
        {
            "fn_name": "two_sum",
            "inputs": ["\n".join(json.dumps(a) for a in json.loads(t["input"])) for t in call["test_cases"]],
            "outputs": [json.dumps(json.loads(t["output"])[0]) for t in call["test_cases"]],
        }
    )
    completion = completion_of(problem["wrong"][0]["code"], "python")  # passes 1 of 3
    two_sum = completion_of(BY_ID["two_sum"]["wrong"][0]["code"], "python")  # passes 1 of 3
    samples = [
        sample(completion, info),
        sample(completion, json.dumps(info)),
        sample(completion, apps_format(info)),
        sample(completion, contests_format(info)),
        sample(two_sum, call),
        sample(two_sum, typed_call),
        sample(two_sum, lcb_call),
    ]
    result = client.score(samples, ["code_pass_rate"])
    assert result.rewards[0].scores == pytest.approx([1 / 3] * 7)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"test_cases": [{"type": "stdin_stdout", "input": "1\n"}]}, "test_cases[0] has no 'output'"),
        ({"inputs": ["1"], "outputs": []}, "inputs/outputs has 1 inputs but 0 outputs"),
        (
            {"test_cases": [{"type": "checker", "input": "", "output": ""}]},
            "test_cases[0].type 'checker' is not supported",
        ),
        ("not json {", "not JSON"),
        ({"tests": []}, "unknown test format"),
        ({"test_cases": []}, "no test cases"),
        (  # only a Python program can be called: a problem that says otherwise cannot be graded anywhere
            {
                "language": "cpp",
                "test_cases": [{"type": "function_call", "fn_name": "f", "input": "[1]", "output": "1"}],
            },
            "language 'cpp' with function_call tests: function-call tests run Python programs only",
        ),
        (
            {"language": "c++", "fn_name": "f", "inputs": ["1"], "outputs": ["1"]},
            "language 'c++' with function_call tests",
        ),
    ],
)
def test_malformed_tests_are_refused_naming_the_sample(client: RewardClient, info: Any, message: str) -> None:
    good = BY_ID["sum_two"]["verification_info"]
    samples = [sample("x", good), sample("x", good), sample("x", info)]
    with pytest.raises(RewardServiceError) as caught:
        client.score(samples, ["code_pass_rate"])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[2] field 'verification_info'" in caught.value.details
    assert message in caught.value.details


def test_pickled_tests_are_refused_never_unpickled(client: RewardClient, tmp_path: Path) -> None:
    """LiveCodeBench's private tests: base64(zlib(pickle)). Unpickling this one would create a file."""
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    blob = base64.b64encode(zlib.compress(pickle.dumps(Exploit()))).decode()
    for info in (blob, {"inputs": blob, "outputs": []}):
        with pytest.raises(RewardServiceError) as caught:
            client.score([sample("x", info)], ["open_r1_code"])
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "pickled test data" in caught.value.details and "never unpickled" in caught.value.details
    assert not marker.exists()


def test_unsupported_language_no_code_and_unconfigured_engine(client: RewardClient) -> None:
    info = BY_ID["sum_two"]["verification_info"]
    cobol = {**info, "language": "cobol"}
    samples = [
        sample(completion_of("print(1)\n", "python"), cobol),
        sample("I cannot solve this.", info),
        sample(completion_of(BY_ID["sum_two"]["reference"], "python"), info),
    ]
    result = client.score(samples, ["code_pass_rate", {"name": "code_pass_rate", "params": {"engine": "piston"}}])
    local, piston = result.rewards
    assert math.isnan(local.scores[0]) and local.kinds[0] == Outcome.NOT_APPLICABLE
    assert "'cobol'" in local.notes[0]
    assert local.scores[1:] == [0.0, 1.0]
    assert (
        local.extra_columns["code_verdicts"][1]
        == "0/4 passed; no code: no ```python block (the problem is in python); #1-#4 not run"
    )
    # No Piston server configured: the engine is unavailable, NaN (never 0), counted as such.
    assert math.isnan(piston.scores[2]) and piston.kinds[2] == Outcome.UNAVAILABLE
    assert "piston" in piston.notes[2] and "no server configured" in piston.notes[2]
    assert piston.counts.unavailable == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"time_limit_s": 0}, "time_limit_s must be in (0, 300]"),
        ({"memory_mb": 4}, "memory_mb must be in [16, 65536]"),
        ({"comparison": "fuzzy"}, "comparison must be one of lines, tokens, exact"),
        ({"engine": "unsafe-local"}, "engine must be one of local, sandboxfusion, piston"),
        ({"max_tests": -1}, "max_tests must be 0 (all) or positive"),
    ],
)
def test_bad_params_are_refused_up_front(client: RewardClient, params: dict, message: str) -> None:
    with pytest.raises(RewardServiceError) as caught:
        client.score([sample("x", BY_ID["sum_two"]["verification_info"])], [{"name": "code_passed", "params": params}])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details


def test_a_cpp_answer_to_a_function_call_problem_is_the_programs_failure(client: RewardClient) -> None:
    """APPS/TACO/LiveCodeBench give ``fn_name`` without a language, and only Python can be called: the problem is
    Python's. A completion answering in C++ has no python block, which the strict rewards score 0 (never a NaN that
    would spare the policy its penalty and count as an engine failure); open_r1_code gives open-r1's number."""
    call = BY_ID["two_sum"]["verification_info"]
    cases = call["test_cases"]
    lcb = {
        "fn_name": "two_sum",
        "inputs": ["\n".join(json.dumps(a) for a in json.loads(t["input"])) for t in cases],
        "outputs": [json.dumps(json.loads(t["output"])[0]) for t in cases],
    }
    no_language = {"test_cases": cases}  # open-r1's format with no language named
    cpp = completion_of(BY_ID["sum_two_cpp"]["reference"], "cpp")
    rewards = ["code_pass_rate", "code_passed", "open_r1_code", "open_r1_binary_code"]
    result = client.score([sample(cpp, lcb), sample(cpp, json.dumps(lcb)), sample(cpp, no_language)], rewards)
    rate, passed, open_r1, binary = result.rewards
    n = len(cases)
    for strict in (rate, passed):
        assert strict.scores == [0.0, 0.0, 0.0], strict.notes
        assert strict.counts.unavailable == 0 and strict.counts.scored == 3
        assert (
            strict.extra_columns["code_verdicts"]
            == [f"0/{n} passed; no code: no ```python block (the problem is in python); #1-#{n} not run"] * 3
        )
    assert open_r1.scores[2] == open_r1_code_reward(cpp, no_language) == 0.0  # open-r1's own grader
    assert open_r1.scores == binary.scores == [0.0, 0.0, 0.0]
    assert open_r1.counts.unavailable == 0
    # The same problem answered in Python is graded as usual.
    python = completion_of(BY_ID["two_sum"]["reference"], "python")
    again = client.score([sample(python, lcb), sample(python, no_language)], ["code_pass_rate"])
    assert again.rewards[0].scores == [1.0, 1.0]


def test_an_engine_refusing_what_the_checks_exclude_is_not_unavailable() -> None:
    """Only the engine's own failure (EngineUnavailable) is UNAVAILABLE. A ValueError from an engine (a call test
    outside Python, a language it does not know) is a request the checks up front exclude: it must not become a NaN
    that spares the program its score."""
    from reward_server.code.execution import RunLimits, TestInput
    from reward_server.code.rewards import run_program

    with pytest.raises(ValueError, match="function-call tests are run for Python only, not cpp"):
        run_program("local", "cpp", "int main() {}", [TestInput(fn_name="f")], RunLimits(), False)
    with pytest.raises(ValueError, match="unsupported language 'cobol'"):
        run_program("local", "cobol", "", [TestInput()], RunLimits(), False)
