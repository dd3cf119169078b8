"""Unit tests for the marker reward family (reward_server.rewards.markers).

Expected values are derived by hand from the spec, not from the implementation.
"""

from __future__ import annotations

import pytest

from reward_server.rewards.markers import (
    answer_check,
    format_approximate,
    format_exact,
    number_check,
)

RS, RE, SS, SE = "<start_working_out>", "<end_working_out>", "<SOLUTION>", "</SOLUTION>"


def full(solution: str, *, start: str = RS, tail: str = "") -> str:
    """A well formatted completion with the given solution text."""
    return f"{start}Let me think{RE}{SS}{solution}{SE}{tail}"


# Custom markers that contain regex metacharacters: they must be escaped.
META = {
    "reasoning_start": "((",
    "reasoning_end": "(done)",
    "solution_start": "[[",
    "solution_end": "]]",
}
# Custom markers in the <think>/<answer> style.
TAGS = {
    "reasoning_start": "<think>",
    "reasoning_end": "</think>",
    "solution_start": "<answer>",
    "solution_end": "</answer>",
}

# --------------------------------------------------------------------------- format_exact


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (full("42"), 3.0),
        (full("42", tail="\n  \n"), 3.0),  # trailing whitespace before \Z
        (full("42", start=""), 3.0),  # reasoning_start is not required
        (f"{RS}think{RE} so the result is {SS}42{SE}", 3.0),  # text between markers
        (f"{RS}line\nline{RE}\n{SS}\nmulti\nline\n{SE}", 3.0),  # DOTALL
        (full("42", tail=" thanks"), 0.0),  # text after solution_end
        (full("42", tail="\n" + SE), 3.0),  # .+? may extend to the last solution_end
        (f"{RS}think{SS}42{SE}", 0.0),  # no reasoning_end
        (f"{RS}think{RE}42{SE}", 0.0),  # no solution_start
        (f"{RS}think{RE}{SS}42", 0.0),  # no solution_end
        (full(""), 0.0),  # empty solution: (.+?) needs a character
        (f"{SS}42{SE}{RE}", 0.0),  # wrong order
        (full("über ∞"), 3.0),  # unicode
        ("", 0.0),
    ],
)
def test_format_exact(completion, expected):
    assert format_exact(completion) == pytest.approx(expected)


def test_format_exact_value_and_custom_markers():
    assert format_exact(full("1"), value=1.25) == pytest.approx(1.25)
    assert format_exact("<think>r</think><answer>7</answer>", **TAGS) == pytest.approx(3.0)
    assert format_exact(full("7"), **TAGS) == pytest.approx(0.0)
    assert format_exact("(( r (done) [[7]]", **META) == pytest.approx(3.0)
    # Unescaped, "(done)" would match "done" and "[[" would be a regex error.
    assert format_exact("(( r done [[7]]", **META) == pytest.approx(0.0)


# --------------------------------------------------------------------------- format_approximate


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (full("42"), 1.5),  # RE, SS, SE once each
        (full("42", start=""), 1.5),  # reasoning_start not counted by default
        (full("42", start=RS + RS), 1.5),
        ("", -3.0),
        (f"{RE}{SS}1{SE}{SS}2{SE}", 0.5 - 1.0 - 1.0),  # SS and SE twice
        (f"{RE}{RE}{SS}1{SE}", -1.0 + 0.5 + 0.5),
        (f"{RS}think{RE} answer 42", 0.5 - 1.0 - 1.0),  # only RE
        (f"{SS}42{SE}{RE}", 1.5),  # counts only, order does not matter
    ],
)
def test_format_approximate(completion, expected):
    assert format_approximate(completion) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (full("42"), 2.0),
        (full("42", start=""), -1.0 + 1.5),
        (full("42", start=RS + RS), -1.0 + 1.5),
        ("", -4.0),
    ],
)
def test_format_approximate_count_reasoning_start(completion, expected):
    assert format_approximate(completion, count_reasoning_start=True) == pytest.approx(expected)


def test_format_approximate_hit_miss_and_custom_markers():
    assert format_approximate(full("42"), hit=1.0, miss=0.0) == pytest.approx(3.0)
    assert format_approximate("", hit=1.0, miss=-0.25) == pytest.approx(-0.75)
    tagged = "<think>r</think><answer>7</answer>"
    assert format_approximate(tagged, **TAGS) == pytest.approx(1.5)
    assert format_approximate(tagged, count_reasoning_start=True, **TAGS) == pytest.approx(2.0)
    assert format_approximate(full("7"), **TAGS) == pytest.approx(-3.0)
    assert format_approximate("(( r (done) [[7]]", count_reasoning_start=True, **META) == (pytest.approx(2.0))


# --------------------------------------------------------------------------- answer_check


@pytest.mark.parametrize(
    ("solution", "truth", "expected"),
    [
        ("42", "42", 5.0),  # exact
        (" 42 ", "42", 3.5),  # equal after strip
        ("42", " 42\n", 3.5),
        ("95", "100", 2.0),  # ratio 0.95
        ("105", "100", 2.0),
        ("90", "100", 2.0),  # ratio exactly 0.9: inclusive
        ("110", "100", 2.0),  # ratio 1.1: inclusive
        ("85", "100", 1.5),  # ratio 0.85
        ("115", "100", 1.5),
        ("80", "100", 1.5),  # ratio 0.8: inclusive
        ("120", "100", 1.5),  # ratio 1.2: inclusive
        ("50", "100", -2.5),
        ("79", "100", -2.5),
        ("100.0", "100", 2.0),  # not equal as text, ratio 1.0
        ("-10", "-10.5", 2.0),  # negative numbers: ratio ~0.952
        ("-10", "10", -2.5),  # ratio -1
        ("1,000", "1000", -4.5),  # float("1,000") raises ValueError
        ("abc", "42", -4.5),  # ValueError
        ("Paris", "Paris", 5.0),  # exact text match needs no number
        ("paris", "Paris", -4.5),
        ("0", "0", 5.0),  # zero reference, exact
        ("0.0", "0", -4.5),  # ZeroDivisionError
        ("5", "0", -4.5),
        ("7", "", -4.5),  # float("") raises ValueError
        ("über", " über ", 3.5),  # unicode
    ],
)
def test_answer_check(solution, truth, expected):
    assert answer_check(full(solution), truth) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("completion", "truth", "expected"),
    [
        ("The answer is 42", "42", -2.0),  # no markers
        ("", "42", -2.0),
        (f"{RS}think{SS}42{SE}", "42", -2.0),  # no reasoning_end
        (full("42", tail=" done"), "42", -2.0),  # text after solution_end
        (full(""), "", -2.0),  # empty solution does not match
        (full("42", tail="\n"), "42", 5.0),
        # Two solution blocks: group 1 spans "1</SOLUTION><SOLUTION>2", not a number.
        (f"{RE}{SS}1{SE}{SS}2{SE}", "2", -4.5),
    ],
)
def test_answer_check_format(completion, truth, expected):
    assert answer_check(completion, truth) == pytest.approx(expected)


def test_answer_check_custom_markers():
    assert answer_check("<think>r</think><answer>7</answer>", "7", **TAGS) == pytest.approx(5.0)
    assert answer_check(full("7"), "7", **TAGS) == pytest.approx(-2.0)
    assert answer_check("(( r (done) [[ 95 ]]", "100", **META) == pytest.approx(2.0)


# --------------------------------------------------------------------------- number_check


@pytest.mark.parametrize(
    ("completion", "truth", "expected"),
    [
        (f"{SS}42{SE}", "42", 3.5),  # reasoning markers are not needed
        (full("42"), "42", 3.5),
        (full("42"), " 42\n", 3.5),  # truth stripped
        (full("The answer is 42."), "42", 3.5),  # "42." -> 42.0
        (full("3.50"), "3.5", 3.5),  # numeric comparison
        (full("1,000"), "1000", 3.5),  # commas removed
        (full("1,000,000"), "1000000", 3.5),
        (full("1,5"), "1.5", -1.5),  # German decimal comma becomes 15
        (full("-5"), "-5", 3.5),  # negative
        (full("-5"), "5", -1.5),
        (full("43"), "42", -1.5),
        (full("2 or 3"), "3", -1.5),  # first number after solution_start
        (full("0"), "0", 3.5),  # zero reference
        (full("0.0"), "0", 3.5),
        (f"12 apples {SS}7{SE}", "7", 3.5),  # numbers before solution_start ignored
        (f"{SS}1{SE}{SS}2{SE}", "1", 3.5),  # first solution_start
        (f"{SS}\n\n  42{SE}", "42", 3.5),  # DOTALL, whitespace
        (full("none"), "42", -2.5),  # no digits, dots or commas
        ("The answer is 42", "42", -2.5),  # no solution_start
        ("", "42", -2.5),
        (full("yes, sure"), "42", 0.0),  # group is "," -> "" -> ValueError
        (full("1.2.3"), "1.2", 0.0),  # ValueError
        (full("42"), "abc", 0.0),  # truth is not a number
        (full("42"), "", 0.0),
    ],
)
def test_number_check(completion, truth, expected):
    assert number_check(completion, truth) == pytest.approx(expected)


def test_number_check_custom_markers():
    assert number_check("<answer>7</answer>", "7", **TAGS) == pytest.approx(3.5)
    assert number_check(f"{SS}7{SE}", "7", **TAGS) == pytest.approx(-2.5)
    # Escaped: "[[" is literal; unescaped it would be an invalid regex.
    assert number_check("r (done) [[ 1,234 ]]", "1234", **META) == pytest.approx(3.5)
