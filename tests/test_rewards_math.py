"""Light unit tests for the math-equivalence reward (reward_server.rewards.math_equiv).

Only obvious equivalences are checked; the heavy lifting is done by math-verify.
"""

from __future__ import annotations

import math

import pytest

from reward_server.outcomes import Note, NoteKind
from reward_server.registry import SampleScore
from reward_server.rewards.math_equiv import math_equivalence


@pytest.mark.parametrize(
    ("completion", "reference"),
    [
        (r"\boxed{\frac{1}{2}}", "0.5"),
        (r"<think>half of one</think> The answer is $\boxed{\frac{1}{2}}$.", "0.5"),
        (r"\boxed{0.5}", r"\frac{1}{2}"),
        (r"\boxed{42}", "42"),
        (r"\boxed{2}", "2.0"),
        (r"\boxed{-3}", "-3"),
        (r"The result is \boxed{\sqrt{4}}", "2"),
    ],
)
def test_equivalent(completion, reference):
    assert math_equivalence(completion, reference) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("completion", "reference"),
    [
        (r"\boxed{3}", "0.5"),
        (r"\boxed{\frac{1}{3}}", "0.5"),
        (r"\boxed{-3}", "3"),
    ],
)
def test_not_equivalent(completion, reference):
    assert math_equivalence(completion, reference) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("<answer>0.5</answer>", r"\frac{1}{2}", 1.0),  # no box: the answer tag is used
        ("<reasoning>\nhalf\n</reasoning>\n<answer>\n1/2\n</answer>", "0.5", 1.0),
        ("<answer>0.25</answer>", r"\frac{1}{2}", 0.0),
    ],
)
def test_answer_tag_fallback(completion, reference, expected):
    assert math_equivalence(completion, reference) == pytest.approx(expected)


def test_custom_value():
    assert math_equivalence(r"\boxed{\frac{1}{2}}", "0.5", value=2.0) == pytest.approx(2.0)
    assert math_equivalence(r"\boxed{3}", "0.5", value=2.0) == pytest.approx(0.0)


@pytest.mark.parametrize("completion", ["", "I do not know."])
def test_no_answer_scores_zero(completion):
    score = math_equivalence(completion, "0.5")
    assert not math.isnan(score)
    assert score == pytest.approx(0.0)


def test_returns_float():
    assert isinstance(math_equivalence(r"\boxed{1}", "1"), float)


@pytest.mark.parametrize("reference", ["Answer is forty two.", "Answer is forty three.", ""])
@pytest.mark.parametrize("completion", [r"\boxed{42}", "Answer is forty two.", ""])
def test_unparsable_reference_is_nan_with_a_note(completion, reference):
    # TRL's accuracy_reward returns None for these: a bad label is not a wrong answer.
    from registry_scoring import score

    result = score("math_equivalence", [completion], [reference])
    assert math.isnan(result.scores[0])
    assert result.notes[0] == Note(f"reference did not parse as math: {reference!r}", NoteKind.NOT_APPLICABLE)


def test_unparsable_reference_returns_no_score():
    out = math_equivalence(r"\boxed{42}", "Answer is forty two.")
    assert isinstance(out, SampleScore) and out.score is None
