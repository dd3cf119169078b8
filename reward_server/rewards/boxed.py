"""``<think>`` + ``\\boxed{}`` rewards for R1-style math output (seed 003)."""

from __future__ import annotations

import Levenshtein

from reward_server.declare import sample_reward

_BOX = "\\boxed{"
_DEPTH = {"{": 1, "}": -1}  # brace → change of nesting depth


def _boxes(text: str, begin: int = 0) -> list[tuple[int, str]]:
    """Every balanced ``\\boxed{...}`` from index ``begin`` on as (start index, content); unbalanced ones are skipped.

    Whether a box is balanced depends only on the text from its start on, so a scan from
    ``begin`` finds exactly the boxes a full scan finds there.
    """
    found = []
    start = text.find(_BOX, begin)
    while start != -1:
        depth, i = 1, start + len(_BOX)
        while i < len(text) and depth:
            depth += _DEPTH.get(text[i], 0)
            i += 1
        if depth == 0:
            found.append((start, text[start + len(_BOX) : i - 1]))
        start = text.find(_BOX, start + 1)
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}`` in ``text``, or None.

    Example:
        >>> last_boxed(r"so \\boxed{1} or rather \\boxed{\\frac{1}{2}}")
        '\\\\frac{1}{2}'
        >>> last_boxed(r"\\boxed{unbalanced") is None
        True
    """
    boxes = _boxes(text)
    return boxes[-1][1] if boxes else None


@sample_reward("think_boxed_format", alias="format_reward_func")
def think_boxed_format(completion: str, *, value: float = 1.0, think_prefilled: bool = False) -> float:
    """``value`` if the text opens with ``<think>``, closes it, and a box starts after ``</think>``.

    Args:
        value: score for the right format.
        think_prefilled: the prompt already ends with ``<think>`` (the completion starts inside it).

    Example:
        >>> think_boxed_format("<think>\\n2+2\\n</think>\\nSo \\\\boxed{4}.")
        1.0
        >>> think_boxed_format("2+2\\n</think> \\\\boxed{4}", think_prefilled=True)
        1.0
        >>> think_boxed_format("\\\\boxed{4} <think>x</think>")
        0.0
    """
    text = "<think>" + completion if think_prefilled else completion.lstrip()
    if not text.startswith("<think>") or "</think>" not in text:
        return 0.0
    end = text.index("</think>")
    return value if _boxes(text, end + 1) else 0.0


@sample_reward("boxed_accuracy", alias="accuracy_reward_func", reference_field="answer")
def boxed_accuracy(completion: str, reference: str, *, value: float = 1.0) -> float:
    """``value`` if the last box's content, stripped, equals the stripped reference, else 0.

    Args:
        reference_field: sample field holding the reference answer.
        value: score for a correct boxed answer.

    Example:
        >>> boxed_accuracy("first \\\\boxed{3}, finally \\\\boxed{ 4 }", "4")
        1.0
        >>> boxed_accuracy("no box: 4", "4")
        0.0
    """
    boxed = last_boxed(completion)
    return value if boxed is not None and boxed.strip() == reference.strip() else 0.0


@sample_reward("solution_levenshtein", alias="levenshtein_reward_func", reference_field="solution")
def solution_levenshtein(completion: str, reference: str) -> float:
    """Levenshtein ratio between the text after the last ``</think>`` and the reference; 0 without ``</think>``.

    Args:
        reference_field: sample field holding the reference solution.

    Example:
        >>> solution_levenshtein("<think>x</think>abc", "abc")
        1.0
        >>> solution_levenshtein("abc", "abc")
        0.0
    """
    if "</think>" not in completion:
        return 0.0
    return Levenshtein.ratio(completion.split("</think>")[-1], reference)
