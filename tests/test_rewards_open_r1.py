# ruff: noqa: B905, BLE001, E501, F841, SIM108, UP006, UP035, UP045 - open-r1's functions are copied below as they are
"""open-r1's rewards as the service serves them (reward_server.rewards.open_r1) against open-r1's functions.

open-r1 is not a package one can install here, so its reward functions are copied below, as they are on
huggingface/open-r1's main branch at commit 1416fa0 (2026-04-02), ``src/open_r1/rewards.py`` (Apache-2.0;
the prints removed and the code formatted, nothing else changed), and the service's scores are compared with
them on hand-written edge cases, bare-number and unparsable solutions, and randomized batches. NaN here is
None there. math-verify's own timeouts are left at open-r1's defaults there (these tests run on the main
thread, as open-r1 does).
"""

from __future__ import annotations

import math
import re
from typing import Dict, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from latex2sympy2_extended import NormalizationConfig
from math_verify import LatexExtractionConfig, parse, verify
from registry_scoring import as_none, conversational, score
from test_rewards_trl import COMPLETIONS, MATH_SAMPLES, SOLUTIONS

from reward_server.errors import InvalidArgument
from reward_server.outcomes import NoteKind

# ------------------------------------------------------------ open-r1's functions (copied, see above)


def accuracy_reward(completions: list[list[dict[str, str]]], solution: list[str], **kwargs) -> list[Optional[float]]:
    """Reward function that checks if the completion is the same as the ground truth."""
    contents = [completion[0]["content"] for completion in completions]
    rewards = []
    for content, sol in zip(contents, solution):
        gold_parsed = parse(
            sol,
            extraction_mode="first_match",
        )
        if len(gold_parsed) != 0:
            # We require the answer to be provided in correct latex (no malformed operators)
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
                        # Ensures that boxed is tried first
                        boxed_match_priority=0,
                        try_extract_without_anchor=False,
                    )
                ],
                extraction_mode="first_match",
            )
            # Compute binary rewards if verifiable, `None` otherwise to skip this example
            try:
                reward = float(verify(gold_parsed, answer_parsed))
            except Exception as e:
                reward = None
        else:
            # If the gold solution is not parseable, we assign `None` to skip this example
            reward = None
        rewards.append(reward)

    return rewards


def format_reward(completions, **kwargs):
    """Reward function that checks if the reasoning process is enclosed within <think> and </think> tags, while the final answer is enclosed within <answer> and </answer> tags."""
    pattern = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content, re.DOTALL | re.MULTILINE) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


def tag_count_reward(completions, **kwargs) -> list[float]:
    """Reward function that checks if we produce the desired number of think and answer tags associated with `format_reward()`.

    Adapted from: https://gist.github.com/willccbb/4676755236bb08cab5f4e54a0475d6fb#file-grpo_demo-py-L90
    """

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
    r"""Reward function that checks for clear step-by-step reasoning.
    Regex pattern:
        Step \d+: - matches "Step 1:", "Step 2:", etc.
        ^\d+\. - matches numbered lists like "1.", "2.", etc. at start of line
        \n- - matches bullet points with hyphens
        \n\* - matches bullet points with asterisks
        First,|Second,|Next,|Finally, - matches transition words
    """
    pattern = r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [len(re.findall(pattern, content)) for content in completion_contents]

    # Magic number 3 to encourage 3 steps and more, otherwise partial reward
    return [min(1.0, count / 3) for count in matches]


def len_reward(completions: list[Dict[str, str]], solution: list[str], **kwargs) -> float:
    """Compute length-based rewards to discourage overthinking and promote token efficiency.

    Taken from the Kimi 1.5 tech report: https://huggingface.co/papers/2501.12599

    Args:
        completions: List of model completions
        solution: List of ground truth solutions

    Returns:
        List of rewards where:
        - For correct answers: reward = 0.5 - (len - min_len)/(max_len - min_len)
        - For incorrect answers: reward = min(0, 0.5 - (len - min_len)/(max_len - min_len))
    """
    contents = [completion[0]["content"] for completion in completions]

    # First check correctness of answers
    correctness = []
    for content, sol in zip(contents, solution):
        gold_parsed = parse(
            sol,
            extraction_mode="first_match",
            extraction_config=[LatexExtractionConfig()],
        )
        if len(gold_parsed) == 0:
            # Skip unparseable examples
            correctness.append(True)  # Treat as correct to avoid penalizing
            continue

        answer_parsed = parse(
            content,
            extraction_config=[
                LatexExtractionConfig(
                    normalization_config=NormalizationConfig(
                        nits=False,
                        malformed_operators=False,
                        basic_latex=True,
                        equations=True,
                        boxed=True,
                        units=True,
                    ),
                    boxed_match_priority=0,
                    try_extract_without_anchor=False,
                )
            ],
            extraction_mode="first_match",
        )
        correctness.append(verify(answer_parsed, gold_parsed))

    # Calculate lengths
    lengths = [len(content) for content in contents]
    min_len = min(lengths)
    max_len = max(lengths)

    # If all responses have the same length, return zero rewards
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
        """Reward function that scales based on completion length using a cosine schedule.

        Shorter correct solutions are rewarded more than longer ones.
        Longer incorrect solutions are penalized less than shorter ones.

        Args:
            completions: List of model completions
            solution: List of ground truth solutions

        This function is parameterized by the following arguments:
            min_value_wrong: Minimum reward for wrong answers
            max_value_wrong: Maximum reward for wrong answers
            min_value_correct: Minimum reward for correct answers
            max_value_correct: Maximum reward for correct answers
            max_len: Maximum length for scaling
        """
        contents = [completion[0]["content"] for completion in completions]
        rewards = []

        for content, sol in zip(contents, solution):
            gold_parsed = parse(
                sol,
                extraction_mode="first_match",
                extraction_config=[LatexExtractionConfig()],
            )
            if len(gold_parsed) == 0:
                rewards.append(1.0)  # Skip unparseable examples
                continue

            answer_parsed = parse(
                content,
                extraction_config=[
                    LatexExtractionConfig(
                        normalization_config=NormalizationConfig(
                            nits=False,
                            malformed_operators=False,
                            basic_latex=True,
                            equations=True,
                            boxed=True,
                            units=True,
                        ),
                        boxed_match_priority=0,
                        try_extract_without_anchor=False,
                    )
                ],
                extraction_mode="first_match",
            )

            is_correct = verify(answer_parsed, gold_parsed)
            gen_len = len(content)

            # Apply cosine scaling based on length
            progress = gen_len / max_len
            cosine = math.cos(progress * math.pi)

            if is_correct:
                min_value = min_value_correct
                max_value = max_value_correct
            else:
                # Swap min/max for incorrect answers
                min_value = max_value_wrong
                max_value = min_value_wrong

            reward = min_value + 0.5 * (max_value - min_value) * (1.0 + cosine)
            rewards.append(float(reward))

        return rewards

    return cosine_scaled_reward


def get_repetition_penalty_reward(ngram_size: int, max_penalty: float, language: str = "en"):
    """
    Computes N-gram repetition penalty as described in Appendix C.2 of https://huggingface.co/papers/2502.03373.
    Reference implementation from: https://github.com/eddycmu/demystify-long-cot/blob/release/openrlhf/openrlhf/reward/repetition.py

    Args:
    ngram_size: size of the n-grams
    max_penalty: Maximum (negative) penalty for wrong answers
    language: Language of the text, defaults to `en`. Used to choose the way to split the text into n-grams.
    """
    if max_penalty > 0:
        raise ValueError(f"max_penalty {max_penalty} should not be positive")

    if language == "en":

        def zipngram(text: str, ngram_size: int):
            words = text.lower().split()
            return zip(*[words[i:] for i in range(ngram_size)]), words

    elif language == "zh":
        from transformers.utils.import_utils import _is_package_available

        if not _is_package_available("jieba"):
            raise ValueError("Please install jieba to use Chinese language")

        def zipngram(text: str, ngram_size: int):
            import jieba

            seg_list = list(jieba.cut(text))
            return zip(*[seg_list[i:] for i in range(ngram_size)]), seg_list

    else:
        raise ValueError(
            f"Word splitting for language `{language}` is not yet implemented. Please implement your own zip-ngram function."
        )

    def repetition_penalty_reward(completions, **kwargs) -> float:
        """
        reward function the penalizes repetitions
        ref implementation: https://github.com/eddycmu/demystify-long-cot/blob/release/openrlhf/openrlhf/reward/repetition.py

        Args:
            completions: List of model completions
        """

        contents = [completion[0]["content"] for completion in completions]
        rewards = []
        for completion in contents:
            if completion == "":
                rewards.append(0.0)
                continue

            ngrams = set()
            total = 0
            ngram_array, words = zipngram(completion, ngram_size)

            if len(words) < ngram_size:
                rewards.append(0.0)
                continue

            for ng in ngram_array:
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


def check_accuracy(completions: list[str], solutions: list[str]) -> list[float | None]:
    """The service's open_r1_accuracy equals open-r1's; each None is NaN with a not-applicable note."""
    expected = accuracy_reward(conversational(completions), solutions)
    result = score("open_r1_accuracy", completions, solutions)
    assert as_none(result.scores) == expected
    assert {i for i, s in enumerate(expected) if s is None} == set(result.notes)
    assert all(note.kind == NoteKind.NOT_APPLICABLE for note in result.notes.values())
    return expected


def test_accuracy_edge_cases() -> None:
    check_accuracy(COMPLETIONS, SOLUTIONS)


#: Plain-number solutions, as datasets write them (open-r1 main parses them; ed89dd9 scored every one 1.0).
BARE = [
    (r"\boxed{41}", "42"),
    (r"\boxed{42}", "42"),
    (r"The answer is $42$.", "42"),
    ("The answer is 42.", "42"),
    (r"\boxed{-7}", "-7"),
    (r"\boxed{7}", "-7"),
    (r"\boxed{\frac{1}{2}}", "0.5"),
    (r"\boxed{0.25}", "0.5"),
    (r"\boxed{1000}", "1,000"),
    (r"\boxed{3.14}", "3.14"),
    ("<think>\n\\boxed{5}\n</think>\n<answer>\n\\boxed{6}\n</answer>", "6"),
    ("", "9"),
]


def test_accuracy_of_bare_number_solutions() -> None:
    completions, solutions = [c for c, _ in BARE], [s for _, s in BARE]
    expected = check_accuracy(completions, solutions)
    assert expected[:2] == [0.0, 1.0]  # \boxed{41} against 42 is wrong, \boxed{42} right
    assert None not in expected and {0.0, 1.0} <= set(expected)


#: Pairs where math-verify's verify is not symmetric (an interval against a relation): the order counts.
ORDER = [
    (r"\boxed{[1,2]}", r"$1 \le x \le 2$"),
    (r"\boxed{x<1}", r"$(-\infty,1)$"),
    (r"\boxed{1 \le x \le 2}", "$[1,2]$"),
    (r"\boxed{(-\infty, 1)}", "$x<1$"),
]


def test_verify_order_gold_first_in_accuracy_answer_first_in_cosine_and_length() -> None:
    completions, solutions = [c for c, _ in ORDER], [s for _, s in ORDER]
    assert check_accuracy(completions, solutions) == [1.0, 0.0, 0.0, 1.0]
    cosine = get_cosine_scaled_reward(min_value_wrong=0.0)(conversational(completions), solutions)
    assert score("open_r1_cosine", completions, solutions).scores == cosine
    assert score("open_r1_length", completions, solutions).scores == len_reward(conversational(completions), solutions)


@pytest.mark.parametrize("solution", ["Answer is forty two.", "", "no math here", r"\boxed{}"])
def test_accuracy_of_an_unparsable_solution_is_nan_with_a_not_applicable_note(solution) -> None:
    assert accuracy_reward(conversational([r"\boxed{43}"]), [solution]) == [None]  # open-r1 main skips it
    result = score("open_r1_accuracy", [r"\boxed{43}"], [solution])
    assert math.isnan(result.scores[0])
    assert result.notes[0].kind == NoteKind.NOT_APPLICABLE and "solution did not parse" in result.notes[0].reason


def test_accuracy_verify_raising_is_none_with_its_reason(monkeypatch) -> None:
    # math-verify 0.9 catches its own errors (raise_on_error=False), so no input makes verify raise: this
    # in-process call of the service's check replaces verify with one that raises, as an older one could.
    import math_verify

    from reward_server.rewards.math_checks import open_r1_accuracy_verdict

    def raising(*args, **kwargs):
        raise TypeError("cannot compare")

    monkeypatch.setattr(math_verify, "verify", raising)
    assert open_r1_accuracy_verdict("42", r"\boxed{42}") == (
        None,
        "math-verify's verify raised TypeError: cannot compare (open-r1: None, skipped)",
    )


@MATH_SETTINGS
@given(MATH_SAMPLES)
def test_accuracy_random_batches(samples) -> None:
    check_accuracy([c for c, _ in samples], [s for _, s in samples])


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


def test_cosine_and_length_of_bare_number_solutions() -> None:
    # open-r1 main still parses the gold with LaTeX extraction only here: its numbers, whatever they are.
    completions, solutions = [c for c, _ in BARE], [s for _, s in BARE]
    expected = get_cosine_scaled_reward(min_value_wrong=0.0)(conversational(completions), solutions)
    assert score("open_r1_cosine", completions, solutions).scores == expected
    assert score("open_r1_length", completions, solutions).scores == len_reward(conversational(completions), solutions)


@MATH_SETTINGS
@given(MATH_SAMPLES, st.integers(1, 40))
def test_cosine_random_batches(samples, max_len) -> None:
    completions, solutions = [c for c, _ in samples], [s for _, s in samples]
    expected = get_cosine_scaled_reward(min_value_wrong=0.0, max_len=max_len)(conversational(completions), solutions)
    assert score("open_r1_cosine", completions, solutions, max_len=max_len).scores == expected


@pytest.mark.parametrize(("ngram_size", "max_penalty"), [(3, -1.0), (1, -0.5), (2, 0.0), (4, -2.0)])
def test_repetition_penalty_edge_cases(ngram_size, max_penalty) -> None:
    texts = ["", " ", "a", "a b", "The cat the CAT the cat", "a a a a a a", "x\ny\tx y", *FORMAT_CASES]
    expected = get_repetition_penalty_reward(ngram_size, max_penalty, language="en")(conversational(texts))
    got = score("open_r1_repetition_penalty", texts, ngram_size=ngram_size, max_penalty=max_penalty, language="en")
    assert got.scores == expected


@pytest.mark.parametrize("language", ["zh", "de", "EN", ""])
def test_repetition_penalty_other_languages_are_refused_up_front(language) -> None:
    # open-r1 fails on these too: ValueError when the reward is built, or for "zh" (split with jieba, not
    # installed here) ImportError when it is called.
    with pytest.raises((ValueError, ImportError)):
        get_repetition_penalty_reward(3, -1.0, language=language)(conversational(["a b c"]))
    with pytest.raises(InvalidArgument, match=f"language {language!r} is not supported here: only 'en'"):
        score("open_r1_repetition_penalty", ["a b c"], language=language)


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
    # A real math-verify overrun (seconds of sympy): the helper process is killed after math_timeout_s and
    # replaced for the third sample.
    from reward_server import settings as worker_settings

    monkeypatch.setattr(worker_settings, "_current", worker_settings.WorkerSettings(math_timeout_s=1.0))
    hangs = r"\boxed{(x+1)^{2999}*(x+2)}"
    completions = [r"\boxed{1}", hangs, r"\boxed{1} and more"]
    result = score("open_r1_length", completions, ["$1$", "$(x+1)^{3000}$", "$1$"])
    # Its length (26, the longest) still counts in the normalization: lengths 9 and 18 of 9..26.
    assert as_none(result.scores) == [0.5, None, 0.5 - 9 / 17]
    assert set(result.notes) == {1} and result.notes[1].kind == NoteKind.TIME_LIMIT
    assert result.notes[1].reason == "math-verify: timed out after 1 s"


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
    assert REGISTRY.get("open_r1_repetition_penalty").defaults() == {
        "ngram_size": 3,
        "max_penalty": -1.0,
        "language": "en",
    }
    assert REGISTRY.get("open_r1_length").defaults() == {"solution_field": "solution", "per_prompt": False}
    assert REGISTRY.get("open_r1_length").split == "whole"
