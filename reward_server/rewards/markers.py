"""Marker-format rewards, Unsloth style: ``<start_working_out>…<end_working_out><SOLUTION>…</SOLUTION>`` (seed 004)."""

from __future__ import annotations

import re
from functools import lru_cache

from reward_server.declare import sample_reward

# Shared defaults of the marker family (each reward takes all four as params).
RS, RE, SS, SE = "<start_working_out>", "<end_working_out>", "<SOLUTION>", "</SOLUTION>"


@lru_cache(maxsize=64)
def _format(reasoning_end: str, solution_start: str, solution_end: str) -> re.Pattern[str]:
    re_, ss, se = (re.escape(m) for m in (reasoning_end, solution_start, solution_end))
    return re.compile(rf"{re_}.*?{ss}(.+?){se}\s*\Z", re.DOTALL)


@lru_cache(maxsize=64)
def _number(solution_start: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(solution_start)}.*?\s*([-]?[\d\.\,]+)", re.DOTALL)


@sample_reward("format_exact", alias="match_format_exactly")
def format_exact(
    completion: str,
    *,
    value: float = 3.0,
    reasoning_start: str = RS,
    reasoning_end: str = RE,
    solution_start: str = SS,
    solution_end: str = SE,
) -> float:
    """``value`` if the text ends with reasoning_end … solution_start X solution_end (trailing space allowed).

    Args:
        value: score for the exact format.
        reasoning_start: marker opening the reasoning (unused here; shared by the marker family).
        reasoning_end: marker closing the reasoning.
        solution_start: marker opening the solution.
        solution_end: marker closing the solution.

    Example:
        >>> format_exact("<start_working_out>2+2<end_working_out><SOLUTION>4</SOLUTION>\\n")
        3.0
        >>> format_exact("<end_working_out><SOLUTION>4</SOLUTION> trailing words")
        0.0
    """
    return value if _format(reasoning_end, solution_start, solution_end).search(completion) else 0.0


@sample_reward("format_approximate", alias="match_format_approximately")
def format_approximate(
    completion: str,
    *,
    hit: float = 0.5,
    miss: float = -1.0,
    count_reasoning_start: bool = False,
    reasoning_start: str = RS,
    reasoning_end: str = RE,
    solution_start: str = SS,
    solution_end: str = SE,
) -> float:
    """Sum over the markers of ``hit`` if the marker occurs exactly once, else ``miss``.

    Args:
        hit: added per marker that occurs exactly once.
        miss: added per marker that is missing or repeated.
        count_reasoning_start: also count reasoning_start (off when the prompt already holds it).
        reasoning_start: marker opening the reasoning.
        reasoning_end: marker closing the reasoning.
        solution_start: marker opening the solution.
        solution_end: marker closing the solution.

    Example:
        >>> format_approximate("x<end_working_out><SOLUTION>4</SOLUTION>")
        1.5
        >>> format_approximate("<SOLUTION>4</SOLUTION><SOLUTION>5</SOLUTION>")
        -3.0
    """
    markers = [reasoning_end, solution_start, solution_end]
    if count_reasoning_start:
        markers.insert(0, reasoning_start)
    return sum(hit if completion.count(m) == 1 else miss for m in markers)


@sample_reward("answer_check", alias="check_answer", reference_field="answer")
def answer_check(
    completion: str,
    reference: str,
    *,
    reasoning_start: str = RS,
    reasoning_end: str = RE,
    solution_start: str = SS,
    solution_end: str = SE,
) -> float:
    """Graded match of the solution to the reference: 5 exact, 3.5 up to spaces, 2/1.5 within 10%/20%.

    No formatted solution → -2.0; further off → -2.5; not a number (or a zero reference) → -4.5.

    Args:
        reference_field: sample field holding the reference answer.
        reasoning_start: marker opening the reasoning (unused here; shared by the marker family).
        reasoning_end: marker closing the reasoning.
        solution_start: marker opening the solution.
        solution_end: marker closing the solution.

    Example:
        >>> answer_check("<end_working_out><SOLUTION>105</SOLUTION>", "100")
        2.0
        >>> answer_check("<end_working_out><SOLUTION> 100 </SOLUTION>", "100")
        3.5
    """
    match = _format(reasoning_end, solution_start, solution_end).search(completion)
    if match is None:
        return -2.0
    guess = match.group(1)
    if guess == reference:
        return 5.0
    if guess.strip() == reference.strip():
        return 3.5
    try:
        ratio = float(guess) / float(reference)
    except (ValueError, ZeroDivisionError):
        return -4.5
    if 0.9 <= ratio <= 1.1:
        return 2.0
    if 0.8 <= ratio <= 1.2:
        return 1.5
    return -2.5


@sample_reward("number_check", alias="check_numbers", reference_field="answer")
def number_check(
    completion: str,
    reference: str,
    *,
    reasoning_start: str = RS,
    reasoning_end: str = RE,
    solution_start: str = SS,
    solution_end: str = SE,
) -> float:
    """3.5 if the first number after solution_start equals the reference numerically, else -1.5.

    No number after the marker → -2.5; a reference or number that does not parse → 0.

    Args:
        reference_field: sample field holding the reference answer.
        reasoning_start: marker opening the reasoning (unused here; shared by the marker family).
        reasoning_end: marker closing the reasoning (unused here).
        solution_start: marker opening the solution.
        solution_end: marker closing the solution (unused here).

    Example:
        >>> number_check("<SOLUTION> 1,000 </SOLUTION>", "1000")
        3.5
        >>> number_check("<SOLUTION>-3</SOLUTION>", "3")
        -1.5
    """
    match = _number(solution_start).search(completion)
    if match is None:
        return -2.5
    try:
        truth = float(reference.strip())
        guess = float(match.group(1).strip().replace(",", ""))
    except ValueError:
        return 0.0
    return 3.5 if guess == truth else -1.5
