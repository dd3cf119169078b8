r"""Unit tests for the \boxed{} reward family (reward_server.rewards.boxed).

Expected values are derived by hand from the spec, not from the implementation.
"""

from __future__ import annotations

import Levenshtein
import pytest

from reward_server.rewards.boxed import (
    boxed_accuracy,
    last_boxed,
    solution_levenshtein,
    think_boxed_format,
)

# --------------------------------------------------------------------------- last_boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"\boxed{42}", "42"),
        (r"The answer is $\boxed{42}$.", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
        (r"\boxed{\sqrt{\frac{a}{b^{2}}}}", r"\sqrt{\frac{a}{b^{2}}}"),  # deeper nesting
        (r"\boxed{1} then \boxed{2}", "2"),  # several boxes: the last one
        (r"\boxed{a}} trailing brace", "a"),
        (r"\boxed{}", ""),  # empty box
        (r"\boxed{π ≈ 3.14}", "π ≈ 3.14"),  # unicode
        ("\\boxed{line1\nline2}", "line1\nline2"),
        ("", None),
        ("no box here {42}", None),
        (r"\boxed{\frac{1}{2}", None),  # unbalanced: not a box
        (r"\boxed{1} and \boxed{2", "1"),  # unbalanced last one is not a box
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


# --------------------------------------------------------------------------- think_boxed_format


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (r"<think>reason</think> answer \boxed{4}", 1.0),
        ("  \n<think>reason</think>\n\\boxed{4}", 1.0),  # leading whitespace is stripped
        (r"<think>a</think>\boxed{\frac{1}{2}}", 1.0),  # nested braces
        (r"<think>\boxed{3}</think> so \boxed{4}", 1.0),  # box before and after
        (r"<think>\boxed{4}</think> done", 0.0),  # box only inside think
        (r"<think>a</think>\boxed{1}</think>", 1.0),  # box after the FIRST </think>
        (r"<think>reason \boxed{4}", 0.0),  # no </think>
        (r"reason</think> \boxed{4}", 0.0),  # does not start with <think>
        (r"Sure. <think>reason</think> \boxed{4}", 0.0),
        (r"<think>reason</think> the answer is 4", 0.0),  # no box
        (r"<think>reason</think> \boxed{4", 0.0),  # unbalanced box is not a box
        (r"<think>reason</think> \boxed{\frac{1}{2}", 0.0),
        (r"<think>überlegen … ∑</think> \boxed{∞}", 1.0),  # unicode
        ("", 0.0),
    ],
)
def test_think_boxed_format(completion, expected):
    assert think_boxed_format(completion) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (r"reason</think> \boxed{4}", 1.0),  # "<think>" was part of the prompt
        (r"  reason</think>\boxed{4}", 1.0),  # no lstrip needed: t starts with <think>
        (r"<think>reason</think>\boxed{4}", 1.0),  # "<think><think>..." still starts ok
        (r"reason \boxed{4}", 0.0),  # no </think>
        (r"reason \boxed{4}</think> no box after", 0.0),
        ("", 0.0),
    ],
)
def test_think_boxed_format_prefilled(completion, expected):
    assert think_boxed_format(completion, think_prefilled=True) == pytest.approx(expected)


def test_think_boxed_format_value():
    assert think_boxed_format(r"<think>r</think>\boxed{1}", value=2.5) == pytest.approx(2.5)
    assert think_boxed_format(r"<think>r</think>", value=2.5) == pytest.approx(0.0)


# --------------------------------------------------------------------------- boxed_accuracy


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        (r"\boxed{42}", "42", 1.0),
        (r"<think>r</think> The answer is \boxed{42}.", "42", 1.0),
        (r"\boxed{ 42 }", " 42\n", 1.0),  # both sides stripped
        (r"\boxed{42}", "43", 0.0),
        (r"\boxed{42}", "42.0", 0.0),  # string comparison, not numeric
        (r"\boxed{1} first, finally \boxed{2}", "2", 1.0),  # last box counts
        (r"\boxed{1} first, finally \boxed{2}", "1", 0.0),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}", 1.0),  # nested braces
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2", 0.0),
        (r"\boxed{1} and \boxed{2", "1", 1.0),  # unbalanced last one is not a box
        (r"\boxed{1} and \boxed{2", "2", 0.0),
        (r"\boxed{\frac{1}{2}", r"\frac{1}{2}", 0.0),  # only an unbalanced box
        ("the answer is 42", "42", 0.0),  # no box
        ("no box", "", 0.0),  # no box, even for an empty reference
        ("", "", 0.0),  # empty completion
        (r"\boxed{}", "", 1.0),  # an empty box is a box
        (r"\boxed{Straße}", "Straße", 1.0),  # unicode
        (r"\boxed{Straße}", "Strasse", 0.0),
    ],
)
def test_boxed_accuracy(completion, reference, expected):
    assert boxed_accuracy(completion, reference) == pytest.approx(expected)


def test_boxed_accuracy_value():
    assert boxed_accuracy(r"\boxed{7}", "7", value=2.5) == pytest.approx(2.5)
    assert boxed_accuracy(r"\boxed{7}", "8", value=2.5) == pytest.approx(0.0)


# --------------------------------------------------------------------------- solution_levenshtein


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        ("<think>x</think>abc", "abc", 1.0),  # identical tail
        ("<think>x</think>", "", 1.0),  # both empty: ratio("", "") == 1.0
        # No stripping: " abc" vs "abc" is one deletion out of 7 chars -> 6/7.
        ("<think>x</think> abc", "abc", 6 / 7),
        # "abcd" vs "abce": delete d, insert e -> 2 of 8 chars -> 6/8.
        ("<think>x</think>abcd", "abce", 0.75),
        ("<think>x</think>abc", "xyz", 0.0),  # nothing in common
        # Last </think> is the split point: tail is "abc".
        ("<think>a</think>zzz</think>abc", "abc", 1.0),
        # Unicode, in characters: "Straße" vs "Strasse": ß out, s+s in -> 3 of 13 -> 10/13.
        ("<think>x</think>Straße", "Strasse", 10 / 13),
        ("abc", "abc", 0.0),  # no </think>
        ("<think>abc", "abc", 0.0),
        ("", "abc", 0.0),
        ("", "", 0.0),
    ],
)
def test_solution_levenshtein(completion, reference, expected):
    assert solution_levenshtein(completion, reference) == pytest.approx(expected)


def test_solution_levenshtein_matches_levenshtein_ratio():
    tail = "\nThe answer is \\boxed{12}, since 3 * 4 = 12.\n"
    reference = "The answer is 12 because 3 times 4 is 12."
    completion = "<think>multiply</think>" + tail
    expected = Levenshtein.ratio(tail, reference)
    assert 0.0 < expected < 1.0
    assert solution_levenshtein(completion, reference) == pytest.approx(expected)
