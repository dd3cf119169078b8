"""XML-tag rewards for GSM8K-style ``<reasoning>…</reasoning><answer>…</answer>`` output (seeds 000/002).

The tag names are params so German recipes can use ``Begründung``/``Antwort``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from reward_server.declare import sample_reward

_INTEGER = re.compile(r"[0-9]+")


def extract_xml_answer(text: str, answer_tag: str = "answer") -> str:
    """The text after the last ``<answer>`` up to the next ``</answer>`` (or the end), stripped.

    Example:
        >>> extract_xml_answer("<answer>1</answer> <answer>\\n 42 \\n</answer> tail")
        '42'
        >>> extract_xml_answer("no tags here")
        ''
    """
    open_tag = f"<{answer_tag}>"
    if open_tag not in text:
        return ""
    return text.rsplit(open_tag, 1)[1].split(f"</{answer_tag}>", 1)[0].strip()


@sample_reward("xml_correctness", alias="correctness_reward_func", reference_field="answer")
def xml_correctness(
    completion: str,
    reference: str,
    *,
    value: float = 2.0,
    reasoning_tag: str = "reasoning",
    answer_tag: str = "answer",
) -> float:
    """``value`` if the answer tag's content equals the stripped reference, else 0.

    Args:
        reference_field: sample field holding the reference answer.
        value: score for a correct answer.
        reasoning_tag: name of the reasoning tag (unused here; shared by the xml family).
        answer_tag: name of the answer tag.

    Example:
        >>> xml_correctness("<reasoning>\\n6*7\\n</reasoning>\\n<answer>\\n42\\n</answer>", " 42\\n")
        2.0
        >>> xml_correctness("<answer>41</answer>", "42")
        0.0
    """
    return value if extract_xml_answer(completion, answer_tag) == reference.strip() else 0.0


@sample_reward("xml_integer", alias="int_reward_func")
def xml_integer(
    completion: str, *, value: float = 0.5, reasoning_tag: str = "reasoning", answer_tag: str = "answer"
) -> float:
    """``value`` if the answer tag holds only digits, else 0.

    Args:
        value: score for an all-digit answer.
        reasoning_tag: name of the reasoning tag (unused here; shared by the xml family).
        answer_tag: name of the answer tag.

    Example:
        >>> xml_integer("<answer>\\n42\\n</answer>")
        0.5
        >>> xml_integer("<answer>-42</answer>")
        0.0
    """
    return value if _INTEGER.fullmatch(extract_xml_answer(completion, answer_tag)) else 0.0


@lru_cache(maxsize=64)
def _strict_pattern(reasoning_tag: str, answer_tag: str) -> re.Pattern[str]:
    # X and Y may contain anything but the four tags: a tempered token per character.
    tags = "|".join(
        re.escape(t) for t in (f"<{reasoning_tag}>", f"</{reasoning_tag}>", f"<{answer_tag}>", f"</{answer_tag}>")
    )
    body = rf"(?:(?!{tags}).)*"
    r, a = re.escape(reasoning_tag), re.escape(answer_tag)
    return re.compile(rf"<{r}>\n{body}\n</{r}>\n<{a}>\n{body}\n</{a}>", re.DOTALL)


@sample_reward("xml_strict_format", alias="strict_format_reward_func")
def xml_strict_format(
    completion: str, *, value: float = 0.5, reasoning_tag: str = "reasoning", answer_tag: str = "answer"
) -> float:
    """``value`` if the completion is exactly ``<R>\\nX\\n</R>\\n<A>\\nY\\n</A>`` (one trailing newline allowed).

    Args:
        value: score for the exact format.
        reasoning_tag: name of the reasoning tag.
        answer_tag: name of the answer tag.

    Example:
        >>> xml_strict_format("<reasoning>\\nsteps\\n</reasoning>\\n<answer>\\n42\\n</answer>\\n")
        0.5
        >>> xml_strict_format("<reasoning>steps</reasoning><answer>42</answer>")
        0.0
    """
    text = completion[:-1] if completion.endswith("\n") else completion
    return value if _strict_pattern(reasoning_tag, answer_tag).fullmatch(text) else 0.0


@lru_cache(maxsize=64)
def _soft_pattern(reasoning_tag: str, answer_tag: str) -> re.Pattern[str]:
    r, a = re.escape(reasoning_tag), re.escape(answer_tag)
    return re.compile(rf"<{r}>.*?</{r}>\s*<{a}>.*?</{a}>", re.DOTALL)


@sample_reward("xml_soft_format", alias="soft_format_reward_func")
def xml_soft_format(
    completion: str, *, value: float = 0.5, reasoning_tag: str = "reasoning", answer_tag: str = "answer"
) -> float:
    """``value`` if a reasoning block is followed (whitespace between) by an answer block anywhere.

    Args:
        value: score when both blocks are present in order.
        reasoning_tag: name of the reasoning tag.
        answer_tag: name of the answer tag.

    Example:
        >>> xml_soft_format("Sure. <reasoning>a</reasoning> <answer>b</answer> done")
        0.5
        >>> xml_soft_format("<answer>b</answer><reasoning>a</reasoning>")
        0.0
    """
    return value if _soft_pattern(reasoning_tag, answer_tag).search(completion) else 0.0


@sample_reward("xml_tag_count", alias="xmlcount_reward_func")
def xml_tag_count(completion: str, *, reasoning_tag: str = "reasoning", answer_tag: str = "answer") -> float:
    """0.125 per well-placed tag, minus 0.001 per character after the closing answer tag (the seeds' count_xml).

    Args:
        reasoning_tag: name of the reasoning tag.
        answer_tag: name of the answer tag.

    Example:
        >>> xml_tag_count("<reasoning>\\na\\n</reasoning>\\n<answer>\\n1\\n</answer>\\n")
        0.5
        >>> round(xml_tag_count("<reasoning>\\na\\n</reasoning>\\n<answer>\\n1\\n</answer>\\nextra"), 4)
        0.49
    """
    r_open, r_close = f"<{reasoning_tag}>\n", f"\n</{reasoning_tag}>\n"
    a_open, a_close = f"\n<{answer_tag}>\n", f"\n</{answer_tag}>"
    count = 0.0
    if completion.count(r_open) == 1:
        count += 0.125
    if completion.count(r_close) == 1:
        count += 0.125
    if completion.count(a_open) == 1:
        count += 0.125
        count -= len(completion.split(a_close + "\n")[-1]) * 0.001
    if completion.count(a_close) == 1:
        count += 0.125
        count -= (len(completion.split(a_close)[-1]) - 1) * 0.001
    return count
