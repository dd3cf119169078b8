"""TRL's rewards as the service serves them (reward_server.rewards.trl_rewards) against TRL's own functions.

Every reward is scored in-process through the registry, as a worker runs it, and compared with
``trl.rewards`` on the same inputs: hand-written edge cases (TRL's own test cases among them) and
randomized batches. NaN here is None there. The real-server round trip (token ids, extra columns,
the missing-ids error) is in ``test_rewards_served.py``.
"""

from __future__ import annotations

import inspect
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registry_scoring import as_none, conversational, log_extra_of, score
from trl.rewards import (
    accuracy_reward,
    get_cosine_scaled_reward,
    get_repetition_penalty_reward,
    get_soft_overlong_punishment,
    reasoning_accuracy_reward,
    think_format_reward,
)

from reward_server.errors import InvalidArgument
from reward_server.outcomes import NoteKind

#: (completion, solution): TRL's test cases for accuracy_reward, then edge cases of extraction and parsing.
MATH_CASES = [
    (r"\boxed{\frac{63}{400}}", r"\frac{63}{400}"),
    (r"\boxed{\frac{63}{400}}", "63/400"),
    (r"\boxed{\frac{64}{400}}", r"\frac{63}{400}"),
    (r"\boxed{3}", "6"),
    ("Answer is forty two.", "Answer is forty two."),
    (r"Some other content. \boxed{43}.", "Answer is forty three."),
    (r"Answer is \boxed{42}.", "Answer is 42.0"),
    (r"Answer is \boxed{\mathbf{42}}.", "Answer is 42 43 okay?"),
    (r"Answer is \boxed{\textbf{42}}.", "Answer is 42"),
    (r"Answer is \boxed{42}.", r"Answer is \n\boxed{42}"),
    (r"Answer is \boxed{42.3456}.", "Answer is 42.34560"),
    ("", "1"),
    ("no answer here", "1"),
    (r"so \boxed{5\text{ cm}}", "5"),
    (r"\boxed{1} then \boxed{2}", "2"),
    (r"The answer is $\frac{1}{2}$", "0.5"),
    (r"\boxed{\frac{1}{2", "0.5"),
    (r"<think>maybe \boxed{3}</think> so \boxed{4}", "4"),
    (r"<think>maybe \boxed{3}</think> so \boxed{4}", "3"),
    (r"\boxed{(1,2)}", "(1,2)"),
    (r"\boxed{\sqrt{2}}", r"$\sqrt{2}$"),
    (r"\boxed{x^2+1}", r"$1+x^2$"),
    (r"\boxed{\infty}", r"$\infty$"),
    ("Die Antwort ist \\boxed{7}. </think> \\boxed{8}", "8"),
]
COMPLETIONS, SOLUTIONS = [c for c, _ in MATH_CASES], [s for _, s in MATH_CASES]

ANSWERS = st.one_of(
    st.integers(-20, 20).map(lambda n: f"\\boxed{{{n}}}"),
    st.tuples(st.integers(1, 9), st.integers(1, 9)).map(lambda t: f"\\boxed{{\\frac{{{t[0]}}}{{{t[1]}}}}}"),
    st.integers(-20, 20).map(lambda n: f"${n}$"),
    st.integers(0, 20).map(str),
    st.sampled_from(["", "no idea", "\\boxed{}", "\\boxed{x+1}"]),
)
GOLDS = st.one_of(
    st.integers(-20, 20).map(str),
    st.tuples(st.integers(1, 9), st.integers(1, 9)).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
    st.integers(-20, 20).map(lambda n: f"${n}$"),
    st.sampled_from(["Answer is forty two.", "x+1", "$x+1$"]),
)
PREFIXES = st.sampled_from(["", "Let me think. ", "<think>\nhm, \\boxed{2}\n</think>\n", "Reasoning </think> "])
MATH_SAMPLES = st.lists(st.tuples(PREFIXES, ANSWERS, GOLDS).map(lambda t: (t[0] + t[1], t[2])), min_size=1, max_size=6)
# math-verify is slow and its first call in a time-limit helper imports sympy: few examples, no deadline.
MATH_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_accuracy(completions: list[str], solutions: list[str]) -> None:
    expected, logged = log_extra_of(accuracy_reward, conversational(completions), solutions)
    result = score("accuracy_reward", completions, solutions)
    assert as_none(result.scores) == expected
    assert result.extras == {k: [str(v) for v in values] for k, values in logged.items()}
    # A skipped sample says why it is NaN.
    assert {i for i, s in enumerate(expected) if s is None} == set(result.notes)


def test_accuracy_edge_cases() -> None:
    check_accuracy(COMPLETIONS, SOLUTIONS)


def test_accuracy_of_trls_unparseable_gold_is_nan_with_a_note() -> None:
    result = score("accuracy_reward", ["Answer is forty two.", r"\boxed{43}"], ["Answer is forty two."] * 2)
    assert all(math.isnan(s) for s in result.scores)
    assert "solution did not parse" in result.notes[0].reason and result.notes[0].kind == NoteKind.NOT_APPLICABLE
    assert result.extras["gold_parsed"] == ["[unparseable]"] * 2 and result.extras["answer_parsed"] == ["[skipped]"] * 2


@MATH_SETTINGS
@given(MATH_SAMPLES)
def test_accuracy_random_batches(samples) -> None:
    check_accuracy([c for c, _ in samples], [s for _, s in samples])


@pytest.mark.parametrize("delimiters", [None, ("</think>",), ("</reasoning>", "</think>"), ()])
def test_reasoning_accuracy_edge_cases(delimiters) -> None:
    params = {} if delimiters is None else {"reasoning_delimiters": delimiters}
    trl_params = {} if delimiters is None else {"reasoning_delimiters": list(delimiters)}
    completions = [*COMPLETIONS, "<think>a</reasoning> \\boxed{8}</think> \\boxed{9}"]
    solutions = [*SOLUTIONS, "8"]
    expected, logged = log_extra_of(reasoning_accuracy_reward, conversational(completions), solutions, **trl_params)
    result = score("reasoning_accuracy_reward", completions, solutions, **params)
    assert as_none(result.scores) == expected
    assert result.extras == {k: [str(v) for v in values] for k, values in logged.items()}


@MATH_SETTINGS
@given(MATH_SAMPLES)
def test_reasoning_accuracy_random_batches(samples) -> None:
    completions, solutions = [c for c, _ in samples], [s for _, s in samples]
    expected = reasoning_accuracy_reward(conversational(completions), solutions)
    assert as_none(score("reasoning_accuracy_reward", completions, solutions).scores) == expected


THINK_CASES = [
    "<think>\nThis is my reasoning.\n</think>\nThis is my answer.",
    "<think>\nThis is my reasoning.\nThis is my answer.",
    "<think></think>",
    "<think>a<think>b</think>",
    "<think>a</think><think>b</think>",
    " <think>a</think>",
    "x\n<think>a</think>",
    "<think>a\n</think>\n\nmore\nlines",
    "",
]


def test_think_format_edge_cases() -> None:
    assert score("think_format_reward", THINK_CASES).scores == think_format_reward(conversational(THINK_CASES))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["<think>", "</think>", "\n", "a", " ", "<", ">"])).map("".join), max_size=8))
def test_think_format_random(completions) -> None:
    assert score("think_format_reward", completions).scores == think_format_reward(conversational(completions))


COSINE_PARAMS = [
    {},
    {"max_len": 100},
    {"max_len": 7, "min_value_wrong": -2.0, "max_value_wrong": 0.0, "min_value_correct": 0.1, "max_value_correct": 3.0},
]


@pytest.mark.parametrize("params", COSINE_PARAMS)
def test_cosine_edge_cases(params) -> None:
    lengths = [0, 1, 3, 7, 50, 99, 100, 101, 1000, 2500]
    ids = [[1] * lengths[i % len(lengths)] for i in range(len(COMPLETIONS))]
    trl_fn = get_cosine_scaled_reward(**{"max_len": 1000, **params})
    expected = trl_fn(conversational(COMPLETIONS), SOLUTIONS, ids)
    assert as_none(score("cosine_scaled_reward", COMPLETIONS, SOLUTIONS, ids=ids, **params).scores) == expected


@MATH_SETTINGS
@given(MATH_SAMPLES, st.data())
def test_cosine_random_batches(samples, data) -> None:
    completions, solutions = [c for c, _ in samples], [s for _, s in samples]
    ids = [data.draw(st.lists(st.integers(0, 5), max_size=40)) for _ in samples]
    max_len = data.draw(st.integers(1, 30))
    expected = get_cosine_scaled_reward(max_len)(conversational(completions), solutions, ids)
    assert as_none(score("cosine_scaled_reward", completions, solutions, ids=ids, max_len=max_len).scores) == expected


def test_cosine_needs_a_positive_max_len() -> None:
    # Refused up front (INVALID_ARGUMENT for a caller), before any sample is scored.
    with pytest.raises(InvalidArgument, match="'cosine_scaled_reward': max_len must be positive, got 0"):
        score("cosine_scaled_reward", [r"\boxed{1}"], ["1"], ids=[[1]], max_len=0)


TOKEN_IDS = st.lists(st.lists(st.integers(0, 4), max_size=30), min_size=1, max_size=8)


@pytest.mark.parametrize(("ngram_size", "max_penalty"), [(3, -1.0), (1, -0.5), (2, 0.0), (5, -2.0)])
def test_repetition_penalty_edge_cases(ngram_size, max_penalty) -> None:
    ids = [[], [1], [1, 2], [1, 2, 3], [1, 2, 3, 4], [5, 5, 5, 5, 5], [1, 2, 1, 2, 1, 2, 1, 2], list(range(40)) * 2]
    expected = get_repetition_penalty_reward(ngram_size, max_penalty)(ids)
    got = score("repetition_penalty_reward", [""] * len(ids), ids=ids, ngram_size=ngram_size, max_penalty=max_penalty)
    assert got.scores == expected


@settings(max_examples=100, deadline=None)
@given(TOKEN_IDS, st.integers(1, 6), st.floats(-3, 0))
def test_repetition_penalty_random(ids, ngram_size, max_penalty) -> None:
    expected = get_repetition_penalty_reward(ngram_size, max_penalty)(ids)
    got = score("repetition_penalty_reward", [""] * len(ids), ids=ids, ngram_size=ngram_size, max_penalty=max_penalty)
    assert got.scores == expected


def test_repetition_penalty_refuses_a_positive_penalty_as_trl_does() -> None:
    with pytest.raises(ValueError, match="should not be positive"):
        get_repetition_penalty_reward(3, 0.5)
    with pytest.raises(InvalidArgument, match=r"'repetition_penalty_reward': max_penalty 0\.5 should not be positive"):
        score("repetition_penalty_reward", ["", ""], ids=[[1, 1, 1], [2]], max_penalty=0.5)
    with pytest.raises(InvalidArgument, match="ngram_size must be positive, got 0"):
        score("repetition_penalty_reward", [""], ids=[[1]], ngram_size=0)


@pytest.mark.parametrize(("max_len", "cache"), [(100, 20), (100, 0), (10, 10), (5, 8), (20480, 4096)])
def test_soft_overlong_edge_cases(max_len, cache) -> None:
    ids = [[7] * n for n in (0, 1, 4, 5, 9, 10, 11, 79, 80, 81, 90, 99, 100, 101, 500)]
    expected = get_soft_overlong_punishment(max_len, cache)(ids)
    got = score(
        "soft_overlong_punishment_reward", [""] * len(ids), ids=ids, max_completion_len=max_len, soft_punish_cache=cache
    )
    assert got.scores == expected


@settings(max_examples=100, deadline=None)
@given(TOKEN_IDS, st.integers(0, 40), st.integers(0, 40))
def test_soft_overlong_random(ids, max_len, cache) -> None:
    expected = get_soft_overlong_punishment(max_len, cache)(ids)
    got = score(
        "soft_overlong_punishment_reward", [""] * len(ids), ids=ids, max_completion_len=max_len, soft_punish_cache=cache
    )
    assert got.scores == expected


def trl_defaults(fn) -> dict:
    """The defaults in the signature of TRL's installed function."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


def test_defaults_are_trls() -> None:
    from reward_server.registry import REGISTRY

    cosine = REGISTRY.get("cosine_scaled_reward").defaults()
    assert "max_len" not in trl_defaults(get_cosine_scaled_reward) and cosine.pop("max_len") == 1000  # TRL has none
    assert cosine == {"solution_field": "solution", **trl_defaults(get_cosine_scaled_reward)}
    assert REGISTRY.get("repetition_penalty_reward").defaults() == trl_defaults(get_repetition_penalty_reward)
    assert set(trl_defaults(get_repetition_penalty_reward)) == {"ngram_size", "max_penalty"}
    soft = REGISTRY.get("soft_overlong_punishment_reward").defaults()
    assert trl_defaults(get_soft_overlong_punishment) == {} and set(soft) == {"max_completion_len", "soft_punish_cache"}
    # TRL's signature says None and its body reads that as ["</think>"]: the scores with no delimiters given
    # are compared with TRL's in test_reasoning_accuracy_random_batches.
    assert trl_defaults(reasoning_accuracy_reward)["reasoning_delimiters"] is None
    assert REGISTRY.get("reasoning_accuracy_reward").defaults() == {
        "solution_field": "solution",
        "reasoning_delimiters": ("</think>",),
    }
    reads = {r.name for r in REGISTRY if "completion_ids" in r.reads}
    assert reads >= {"cosine_scaled_reward", "repetition_penalty_reward", "soft_overlong_punishment_reward"}
