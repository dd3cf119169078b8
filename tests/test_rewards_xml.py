"""Unit tests for the XML-tag reward family (reward_server.rewards.xml_tags).

Expected values are derived by hand from the spec, not from the implementation.
"""

from __future__ import annotations

import pytest

from reward_server.rewards.xml_tags import (
    extract_xml_answer,
    xml_correctness,
    xml_integer,
    xml_soft_format,
    xml_strict_format,
    xml_tag_count,
)

# A canonical, perfectly formatted completion (no trailing newline): 52 characters.
CANON = "<reasoning>\nthink\n</reasoning>\n<answer>\n42\n</answer>"
# The same with German tags: 55 characters.
GERMAN = "<Begründung>\nweil\n</Begründung>\n<Antwort>\n42\n</Antwort>"
DE = {"reasoning_tag": "Begründung", "answer_tag": "Antwort"}


def test_fixture_lengths():
    # Sanity check of the hand-computed lengths used in the tag-count expectations below.
    assert len(CANON) == 52
    assert len(GERMAN) == 55


# --------------------------------------------------------------------------- extract


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>\n42\n</answer>", "42"),
        ("", ""),  # empty completion
        ("no tags at all", ""),
        ("</answer> only a closing tag", ""),
        ("<answer> 7  ", "7"),  # no closing tag: up to the end, stripped
        ("<answer>5</answer> trailing prose", "5"),  # text after the closing tag
        ("<answer>1</answer> <answer>2</answer>", "2"),  # several blocks: the last one
        ("<answer>1</answer><answer>2", "2"),  # last block unclosed
        ("<answer>a</answer> x </answer>", "a"),  # first </answer> after the last <answer>
        (
            "<reasoning>use <answer>x</answer> format</reasoning>\n<answer>\n9\n</answer>",
            "9",
        ),  # tag inside reasoning
        ("<answer>\nline one\nline two\n</answer>", "line one\nline two"),
        ("<answer>\nStraße ✓ 東京\n</answer>", "Straße ✓ 東京"),  # unicode
        ("<answer></answer>", ""),
        ("<Antwort>42</Antwort>", ""),  # German tag is not the default tag
    ],
)
def test_extract_xml_answer(text, expected):
    assert extract_xml_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<Antwort>\n42\n</Antwort>", "42"),
        ("<answer>1</answer><Antwort>Ja</Antwort>", "Ja"),
        ("<answer>1</answer>", ""),
    ],
)
def test_extract_xml_answer_custom_tag(text, expected):
    assert extract_xml_answer(text, answer_tag="Antwort") == expected


# --------------------------------------------------------------------------- correctness


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        (CANON, "42", 2.0),
        (CANON, "  42\n", 2.0),  # reference is stripped
        (CANON, "43", 0.0),
        (CANON, "4", 0.0),
        ("<answer>Paris</answer>", "paris", 0.0),  # case sensitive
        ("<answer>1</answer> then <answer>2</answer>", "2", 2.0),  # last block counts
        ("<answer>1</answer> then <answer>2</answer>", "1", 0.0),
        ("<answer>\n42\n</answer>\nI hope this helps!", "42", 2.0),  # text after tag
        ("<answer>\n42", "42", 2.0),  # unclosed answer, no trailing newline
        ("The answer is 42.", "42", 0.0),  # no tag
        ("", "42", 0.0),  # empty completion
        ("", "", 2.0),  # answer("") == "" == "".strip()
        ("<answer> Straße </answer>", "Straße", 2.0),  # unicode
    ],
)
def test_xml_correctness(completion, reference, expected):
    assert xml_correctness(completion, reference) == pytest.approx(expected)


def test_xml_correctness_custom_value():
    assert xml_correctness(CANON, "42", value=1.0) == pytest.approx(1.0)
    assert xml_correctness(CANON, "41", value=1.0) == pytest.approx(0.0)


def test_xml_correctness_german_tags():
    assert xml_correctness(GERMAN, "42", **DE) == pytest.approx(2.0)
    assert xml_correctness(GERMAN, "42") == pytest.approx(0.0)  # default tags absent


# --------------------------------------------------------------------------- integer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("42", 0.5),
        (" 12 ", 0.5),  # stripped
        ("0", 0.5),
        ("007", 0.5),
        ("-3", 0.0),
        ("3.5", 0.0),
        ("1,000", 0.0),
        ("42 apples", 0.0),
        ("", 0.0),
        ("٤٢", 0.0),  # Arabic-Indic digits are not [0-9]
        ("４２", 0.0),  # full-width digits are not [0-9]
    ],
)
def test_xml_integer(answer, expected):
    completion = f"<reasoning>\nr\n</reasoning>\n<answer>\n{answer}\n</answer>"
    assert xml_integer(completion) == pytest.approx(expected)


def test_xml_integer_no_tag_and_params():
    assert xml_integer("42") == pytest.approx(0.0)
    assert xml_integer("") == pytest.approx(0.0)
    assert xml_integer(CANON, value=2.0) == pytest.approx(2.0)
    assert xml_integer(GERMAN, **DE) == pytest.approx(0.5)
    assert xml_integer(GERMAN) == pytest.approx(0.0)


# --------------------------------------------------------------------------- strict format


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (CANON, 0.5),
        (CANON + "\n", 0.5),  # one trailing newline is allowed
        (CANON + "\n\n", 0.0),  # but only one
        (CANON + " ", 0.0),  # trailing space is not removed
        (CANON + "\nextra", 0.0),  # text after the closing tag
        ("Sure!\n" + CANON, 0.0),  # text before
        ("\n" + CANON, 0.0),
        ("<reasoning>\nline1\nline2\n</reasoning>\n<answer>\n4\n2\n</answer>", 0.5),
        ("<reasoning>think</reasoning>\n<answer>\n42\n</answer>", 0.0),  # missing newlines
        ("<reasoning>\nthink\n</reasoning><answer>\n42\n</answer>", 0.0),
        ("<reasoning>\nthink\n</reasoning>\n\n<answer>\n42\n</answer>", 0.0),
        ("<reasoning>\nthink\n</reasoning>\n<answer>42</answer>", 0.0),
        ("<reasoning>\nuse <answer> tags\n</reasoning>\n<answer>\n42\n</answer>", 0.0),
        (CANON + "\n<answer>\n43\n</answer>", 0.0),  # several answer blocks
        ("<reasoning>\nthink\n</reasoning>\n<answer>\n42", 0.0),  # unclosed answer
        ("<answer>\n42\n</answer>", 0.0),
        ("<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>", 0.5),  # empty X and Y
        ("", 0.0),
        ("<reasoning>\nüber → ∞\n</reasoning>\n<answer>\nπ\n</answer>", 0.5),  # unicode
        (GERMAN, 0.0),  # default tags
    ],
)
def test_xml_strict_format(completion, expected):
    assert xml_strict_format(completion) == pytest.approx(expected)


def test_xml_strict_format_german_and_value():
    assert xml_strict_format(GERMAN, **DE) == pytest.approx(0.5)
    assert xml_strict_format(GERMAN + "\n", **DE) == pytest.approx(0.5)
    assert xml_strict_format(CANON, **DE) == pytest.approx(0.0)
    assert xml_strict_format(CANON, value=1.5) == pytest.approx(1.5)


# --------------------------------------------------------------------------- soft format


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (CANON, 0.5),
        ("<reasoning>a</reasoning><answer>b</answer>", 0.5),
        ("<reasoning>a</reasoning> \n\t <answer>b</answer>", 0.5),  # whitespace between
        ("Intro <reasoning>a</reasoning><answer>b</answer> outro", 0.5),  # search, not match
        ("<reasoning>line\nline</reasoning>\n<answer>x\ny</answer>", 0.5),  # DOTALL
        ("<reasoning>a</reasoning> so <answer>b</answer>", 0.0),  # text between
        ("<reasoning>a</reasoning>\n<answer>b", 0.0),  # unclosed answer
        ("<reasoning>a\n<answer>b</answer>", 0.0),  # unclosed reasoning
        ("<answer>b</answer><reasoning>a</reasoning>", 0.0),  # wrong order
        ("<reasoning>a</reasoning> x <reasoning>b</reasoning>\n<answer>c</answer>", 0.5),
        ("", 0.0),
        ("<reasoning>ä</reasoning><answer>ö</answer>", 0.5),
        (GERMAN, 0.0),
    ],
)
def test_xml_soft_format(completion, expected):
    assert xml_soft_format(completion) == pytest.approx(expected)


def test_xml_soft_format_german_and_value():
    assert xml_soft_format(GERMAN, **DE) == pytest.approx(0.5)
    assert xml_soft_format("<Begründung>a</Begründung><Antwort>b</Antwort>", **DE) == (pytest.approx(0.5))
    assert xml_soft_format(CANON, **DE) == pytest.approx(0.0)
    assert xml_soft_format(CANON, value=3.0) == pytest.approx(3.0)


# --------------------------------------------------------------------------- tag count


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        # All four counts are 1; nothing after "\n</answer>\n"; len("\n") - 1 == 0.
        (CANON + "\n", 0.5),
        # No trailing newline: "\n</answer>\n" does not occur, so the split's last part is
        # the whole 52-char text (-0.052); after "\n</answer>" there is "" (len-1 = -1,
        # so +0.001).
        (CANON, 0.5 - 0.052 + 0.001),
        # Text after the closing tag: "extra" (-0.005) and "\nextra" (6-1 = 5, -0.005).
        (CANON + "\nextra", 0.5 - 0.005 - 0.005),
        # Unicode is counted in characters, not bytes: "äöü" (-0.003), "\näöü" (-0.003).
        (CANON + "\näöü", 0.5 - 0.003 - 0.003),
        # Two answer blocks: the two answer counts are 2, only the reasoning counts score.
        (
            "<reasoning>\nr\n</reasoning>\n<answer>\n1\n</answer>\n<answer>\n2\n</answer>\n",
            0.25,
        ),
        ("<reasoning>\nx\n</reasoning>\n", 0.25),  # reasoning only
        ("", 0.0),
        ("no tags", 0.0),
        (GERMAN + "\n", 0.0),  # default tags absent
        # Tags without newlines inside: none of the four patterns occurs.
        ("<reasoning>a</reasoning><answer>b</answer>", 0.0),
    ],
)
def test_xml_tag_count(completion, expected):
    assert xml_tag_count(completion) == pytest.approx(expected)


def test_xml_tag_count_german_tags():
    assert xml_tag_count(GERMAN + "\n", **DE) == pytest.approx(0.5)
    # Without the trailing newline: whole text (55 chars) is the last split part.
    assert xml_tag_count(GERMAN, **DE) == pytest.approx(0.5 - 0.055 + 0.001)
