# ruff: noqa: B905, BLE001, SIM108 - open-r1's functions are copied below as they are
"""open-r1's rewards as the service serves them (reward_server.rewards.open_r1) against open-r1's functions.

open-r1 is not a package one can install here, so its reward functions are copied below, as they
are in huggingface/open-r1 ``src/open_r1/rewards.py`` at commit ed89dd9 (Apache-2.0; the prints
removed, nothing else changed), and the service's scores are compared with them on hand-written
edge cases and randomized batches. math-verify's own timeouts are left at open-r1's defaults
there (these tests run on the main thread, as open-r1 does).
"""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from latex2sympy2_extended import NormalizationConfig
from math_verify import LatexExtractionConfig, parse, verify
from registry_scoring import as_none, conversational, score
from test_rewards_trl import COMPLETIONS, MATH_SAMPLES, SOLUTIONS

# ------------------------------------------------------------ open-r1's functions (copied, see above)


def accuracy_reward(completions, solution, **kwargs):
    contents = [completion[0]["content"] for completion in completions]
    rewards = []
    for content, sol in zip(contents, solution):
        gold_parsed = parse(sol, extraction_mode="first_match", extraction_config=[LatexExtractionConfig()])
        if len(gold_parsed) != 0:
            answer_parsed = parse(
                content,
                extraction_config=[
                    LatexExtractionConfig(
                        normalization_config=NormalizationConfig(
                            nits=False,
                            malformed_operators=False,
                            basic_latex=True,
                            equations=True,
                            boxed="all",
                            units=True,
                        ),
                        boxed_match_priority=0,
                        try_extract_without_anchor=False,
                    )
                ],
                extraction_mode="first_match",
            )
            try:
                reward = float(verify(answer_parsed, gold_parsed))
            except Exception:
                reward = 0.0
        else:
            reward = 1.0
        rewards.append(reward)
    return rewards


def format_reward(completions, **kwargs):
    pattern = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content, re.DOTALL | re.MULTILINE) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


def tag_count_reward(completions, **kwargs) -> list[float]:
    def count_tags(text: str) -> float:
        count = 0.0
        if text.count("<think>\n") == 1:
            count += 0.25
        if text.count("\n</think>\n") == 1:
            count += 0.25
        if text.count("\n<answer>\n") == 1:
            count += 0.25
        if text.count("\n</answer>") == 1:
            count += 0.25
        return count

    contents = [completion[0]["content"] for completion in completions]
    return [count_tags(c) for c in contents]


def reasoning_steps_reward(completions, **kwargs):
    pattern = r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [len(re.findall(pattern, content)) for content in completion_contents]
    return [min(1.0, count / 3) for count in matches]


def _open_r1_answer(content):
    return parse(
        content,
        extraction_config=[
            LatexExtractionConfig(
                normalization_config=NormalizationConfig(
                    nits=False, malformed_operators=False, basic_latex=True, equations=True, boxed=True, units=True
                ),
                boxed_match_priority=0,
                try_extract_without_anchor=False,
            )
        ],
        extraction_mode="first_match",
    )


def len_reward(completions, solution, **kwargs):
    contents = [completion[0]["content"] for completion in completions]
    correctness = []
    for content, sol in zip(contents, solution):
        gold_parsed = parse(sol, extraction_mode="first_match", extraction_config=[LatexExtractionConfig()])
        if len(gold_parsed) == 0:
            correctness.append(True)
            continue
        answer_parsed = _open_r1_answer(content)
        correctness.append(verify(answer_parsed, gold_parsed))
    lengths = [len(content) for content in contents]
    min_len = min(lengths)
    max_len = max(lengths)
    if max_len == min_len:
        return [0.0] * len(completions)
    rewards = []
    for length, is_correct in zip(lengths, correctness):
        lambda_val = 0.5 - (length - min_len) / (max_len - min_len)
        if is_correct:
            reward = lambda_val
        else:
            reward = min(0, lambda_val)
        rewards.append(float(reward))
    return rewards


def get_cosine_scaled_reward(
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    max_len: int = 1000,
):
    def cosine_scaled_reward(completions, solution, **kwargs):
        contents = [completion[0]["content"] for completion in completions]
        rewards = []
        for content, sol in zip(contents, solution):
            gold_parsed = parse(sol, extraction_mode="first_match", extraction_config=[LatexExtractionConfig()])
            if len(gold_parsed) == 0:
                rewards.append(1.0)
                continue
            answer_parsed = _open_r1_answer(content)
            is_correct = verify(answer_parsed, gold_parsed)
            gen_len = len(content)
            progress = gen_len / max_len
            cosine = math.cos(progress * math.pi)
            if is_correct:
                min_value = min_value_correct
                max_value = max_value_correct
            else:
                min_value = max_value_wrong
                max_value = min_value_wrong
            reward = min_value + 0.5 * (max_value - min_value) * (1.0 + cosine)
            rewards.append(float(reward))
        return rewards

    return cosine_scaled_reward


def get_repetition_penalty_reward(ngram_size: int, max_penalty: float):
    if max_penalty > 0:
        raise ValueError(f"max_penalty {max_penalty} should not be positive")

    def zipngram(text: str, ngram_size: int):
        words = text.lower().split()
        return zip(*[words[i:] for i in range(ngram_size)])

    def repetition_penalty_reward(completions, **kwargs) -> float:
        contents = [completion[0]["content"] for completion in completions]
        rewards = []
        for completion in contents:
            if completion == "":
                rewards.append(0.0)
                continue
            if len(completion.split()) < ngram_size:
                rewards.append(0.0)
                continue
            ngrams = set()
            total = 0
            for ng in zipngram(completion, ngram_size):
                ngrams.add(ng)
                total += 1
            scaling = 1 - len(ngrams) / total
            reward = scaling * max_penalty
            rewards.append(reward)
        return rewards

    return repetition_penalty_reward


# ------------------------------------------------------------ the comparisons

MATH_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMAT_CASES = [
    "<think>\nhm\n</think>\n<answer>\n42\n</answer>",
    "<think>\nhm\n</think>\n<answer>\n42\n</answer>\ntrailing line",
    "<think>\nhm\n</think>\n<answer>\n42\n</answer> trailing",
    "<think>hm</think><answer>42</answer>",
    "<think>\n\n</think>\n<answer>\n\n</answer>",
    "<think>\na\n</think>\n<answer>\nb\n</answer>\n<answer>\nc\n</answer>",
    " <think>\nhm\n</think>\n<answer>\n42\n</answer>",
    "Step 1: read.\nStep 2: add.\n- carry\n* done\nFirst, Second, Next, Finally,",
    "1. one\n2. two\n3. three",
    "Step 12: x",
    "",
]
TEXT = st.lists(
    st.sampled_from(
        ["<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>", "Step 1:", "1.", "\n-", "\n*", "First,"]
    )
    | st.sampled_from(["a", " ", "\n", "the cat", "The", "x y z"]),
    max_size=12,
).map("".join)


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("open_r1_format", format_reward),
        ("open_r1_tag_count", tag_count_reward),
        ("open_r1_reasoning_steps", reasoning_steps_reward),
    ],
)
def test_text_rewards_edge_cases(name, fn) -> None:
    assert score(name, FORMAT_CASES).scores == fn(conversational(FORMAT_CASES))


@settings(max_examples=120, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=8))
def test_text_rewards_random(completions) -> None:
    for name, fn in (
        ("open_r1_format", format_reward),
        ("open_r1_tag_count", tag_count_reward),
        ("open_r1_reasoning_steps", reasoning_steps_reward),
    ):
        assert score(name, completions).scores == fn(conversational(completions)), name


def test_accuracy_edge_cases() -> None:
    assert score("open_r1_accuracy", COMPLETIONS, SOLUTIONS).scores == accuracy_reward(
        conversational(COMPLETIONS), SOLUTIONS
    )


def test_accuracy_scores_an_unparsable_gold_1_as_open_r1_does() -> None:
    assert score("open_r1_accuracy", [r"\boxed{43}"], ["Answer is forty two."]).scores == [1.0]


@MATH_SETTINGS
@given(MATH_SAMPLES)
def test_accuracy_random_batches(samples) -> None:
    completions, solutions = [c for c, _ in samples], [s for _, s in samples]
    assert score("open_r1_accuracy", completions, solutions).scores == accuracy_reward(
        conversational(completions), solutions
    )


@pytest.mark.parametrize(
    "params",
    [
        {"min_value_wrong": -1.0},  # open-r1's function defaults
        {"max_len": 30, "min_value_wrong": -2.0, "max_value_wrong": 0.0, "max_value_correct": 2.0},
        {"max_len": 7},  # longer than max_len: not clamped in open-r1
    ],
)
def test_cosine_edge_cases(params) -> None:
    full = {"min_value_wrong": 0.0, "max_len": 1000, **params}  # the service's defaults are open-r1's recipe's
    expected = get_cosine_scaled_reward(**full)(conversational(COMPLETIONS), SOLUTIONS)
    assert score("open_r1_cosine", COMPLETIONS, SOLUTIONS, **params).scores == expected


@MATH_SETTINGS
@given(MATH_SAMPLES, st.integers(1, 40))
def test_cosine_random_batches(samples, max_len) -> None:
    completions, solutions = [c for c, _ in samples], [s for _, s in samples]
    expected = get_cosine_scaled_reward(min_value_wrong=0.0, max_len=max_len)(conversational(completions), solutions)
    assert score("open_r1_cosine", completions, solutions, max_len=max_len).scores == expected


@pytest.mark.parametrize(("ngram_size", "max_penalty"), [(3, -1.0), (1, -0.5), (2, 0.0), (4, -2.0)])
def test_repetition_penalty_edge_cases(ngram_size, max_penalty) -> None:
    texts = ["", " ", "a", "a b", "The cat the CAT the cat", "a a a a a a", "x\ny\tx y", *FORMAT_CASES]
    expected = get_repetition_penalty_reward(ngram_size, max_penalty)(conversational(texts))
    got = score("open_r1_repetition_penalty", texts, ngram_size=ngram_size, max_penalty=max_penalty)
    assert got.scores == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=8), st.integers(1, 5), st.floats(-3, 0))
def test_repetition_penalty_random(completions, ngram_size, max_penalty) -> None:
    expected = get_repetition_penalty_reward(ngram_size, max_penalty)(conversational(completions))
    got = score("open_r1_repetition_penalty", completions, ngram_size=ngram_size, max_penalty=max_penalty)
    assert got.scores == expected


def test_length_edge_cases() -> None:
    assert score("open_r1_length", COMPLETIONS, SOLUTIONS).scores == len_reward(conversational(COMPLETIONS), SOLUTIONS)
    same = [r"\boxed{1}", r"\boxed{2}"]
    assert score("open_r1_length", same, ["1", "1"]).scores == len_reward(conversational(same), ["1", "1"]) == [0, 0]


@MATH_SETTINGS
@given(MATH_SAMPLES)
def test_length_random_batches(samples) -> None:
    completions, solutions = [c for c, _ in samples], [s for _, s in samples]
    assert score("open_r1_length", completions, solutions).scores == len_reward(conversational(completions), solutions)


def test_length_per_prompt_normalizes_each_prompt_group_alone() -> None:
    # Two prompts, interleaved, plain and conversational: each group scores as open-r1's len_reward on it alone.
    chat = [{"role": "user", "content": "What is 1?"}]
    prompts = ["What is 2?", chat, "What is 2?", chat, "What is 2?", chat]
    completions = [r"\boxed{2}", r"\boxed{1}", r"\boxed{2} since 1+1", r"\boxed{3} wrong", r"\boxed{5}", r"\boxed{1}."]
    solutions = ["2", "1", "2", "1", "2", "1"]
    got = score("open_r1_length", completions, solutions, prompts=prompts, per_prompt=True).scores
    for rows in ([0, 2, 4], [1, 3, 5]):
        expected = len_reward(conversational([completions[i] for i in rows]), [solutions[i] for i in rows])
        assert [got[i] for i in rows] == expected
    whole = score("open_r1_length", completions, solutions, prompts=prompts).scores
    assert whole == len_reward(conversational(completions), solutions) != got


def test_length_timed_out_sample_is_nan_and_the_rest_still_score(monkeypatch) -> None:
    from reward_server.rewards import open_r1
    from reward_server.time_limit import SampleTimeout

    real = open_r1.time_limited

    def slow_on_second(fn, solution, completion, *args):
        if completion == "slow":
            raise SampleTimeout("math-verify: timed out after 5 s")
        return real(fn, solution, completion, *args)

    monkeypatch.setattr(open_r1, "time_limited", slow_on_second)
    result = score("open_r1_length", [r"\boxed{1}", "slow", r"\boxed{1} and more"], ["1", "1", "1"])
    # Its length (4, the shortest) still counts in the normalization: 0.5 - (9 - 4) / (18 - 4) for the first.
    assert as_none(result.scores) == [0.5 - 5 / 14, None, -0.5] and result.timeouts == 1
    assert "timed out" in result.notes[1]


def test_defaults_are_open_r1s_recipe_arguments() -> None:
    from reward_server.registry import REGISTRY

    assert REGISTRY.get("open_r1_cosine").defaults() == {
        "solution_field": "solution",
        "min_value_wrong": 0.0,
        "max_value_wrong": -0.5,
        "min_value_correct": 0.5,
        "max_value_correct": 1.0,
        "max_len": 1000,
    }
    assert REGISTRY.get("open_r1_repetition_penalty").defaults() == {"ngram_size": 3, "max_penalty": -1.0}
    assert REGISTRY.get("open_r1_length").defaults() == {"solution_field": "solution", "per_prompt": False}
    assert REGISTRY.get("open_r1_length").split == "whole"
