"""Comparing a program's output with the expected one, on the server (expected outputs never enter a sandbox).

Strict comparison (the ``code_*`` rewards): the outputs have the same number of lines and each line is equal after
trimming trailing whitespace; trailing blank lines are ignored. ``tokens`` compares whitespace-separated tokens
instead, ``exact`` the text byte for byte. With a tolerance, numbers match when ``|a − b| ≤ tol × max(1, |b|)``
(absolute below 1, relative above, as judges state "absolute or relative error"). A function-call test compares
JSON values: numbers by value, a bool only with a bool, lists (tuples arrive as lists) element by element.

open-r1's comparison (:func:`open_r1_lines_match`) zips the stripped output's lines with the expected lines, so a
program that prints only the first expected line passes; it is kept for ``open_r1_code``'s numbers only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The comparison modes a strict reward accepts.
COMPARISONS = ("lines", "tokens", "exact")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _close(a: float, b: float, tolerance: float) -> bool:
    return a == b or (tolerance > 0 and abs(a - b) <= tolerance * max(1.0, abs(b)))


def _token_match(actual: str, expected: str, tolerance: float) -> bool:
    if actual == expected:
        return True
    if tolerance <= 0 or not (_NUMBER.fullmatch(actual) and _NUMBER.fullmatch(expected)):
        return False
    return _close(float(actual), float(expected), tolerance)


def _tokens_match(actual: Sequence[str], expected: Sequence[str], tolerance: float) -> bool:
    return len(actual) == len(expected) and all(
        _token_match(a, e, tolerance) for a, e in zip(actual, expected, strict=True)
    )


def output_matches(actual: str, expected: str, mode: str = "lines", tolerance: float = 0.0) -> bool:
    """Strict comparison of a program's stdout with the expected text (see the module doc for the modes).

    Example:
        >>> output_matches("1 2  \\n3\\n\\n", "1 2\\n3")
        True
        >>> output_matches("1\\n", "1\\n2\\n")
        False
        >>> output_matches("0.3333334\\n", "0.333333", tolerance=1e-6)
        True
        >>> output_matches("1  2", "1 2", mode="tokens"), output_matches(" 1", "1")
        (True, False)
    """
    if mode == "exact":
        return actual == expected
    if mode == "tokens":
        return _tokens_match(actual.split(), expected.split(), tolerance)
    if mode != "lines":
        raise ValueError(f"unknown comparison {mode!r}; one of {', '.join(COMPARISONS)}")
    got, want = _lines(actual), _lines(expected)
    if len(got) != len(want):
        return False
    if tolerance <= 0:
        return got == want
    return all(g == w or _tokens_match(g.split(), w.split(), tolerance) for g, w in zip(got, want, strict=True))


def _same(actual: Any, expected: Any, tolerance: float) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        if isinstance(actual, float) and isinstance(expected, float) and math.isnan(actual) and math.isnan(expected):
            return True
        return _close(actual, expected, tolerance)
    if isinstance(actual, list | tuple) and isinstance(expected, list | tuple):
        return len(actual) == len(expected) and all(
            _same(a, e, tolerance) for a, e in zip(actual, expected, strict=True)
        )
    if isinstance(actual, Mapping) and isinstance(expected, Mapping):
        return actual.keys() == expected.keys() and all(_same(actual[k], expected[k], tolerance) for k in actual)
    return type(actual) is type(expected) and actual == expected


def value_matches(actual_json: str, expected: Any, also: Sequence[Any] = (), tolerance: float = 0.0) -> bool:
    """A function-call test: the returned value (its JSON text) equals ``expected`` or one of ``also``.

    Example:
        >>> value_matches("[1, 2]", (1, 2)), value_matches("3.0", 3), value_matches("true", 1)
        (True, True, False)
        >>> value_matches("5", [5], also=[5])
        True
    """
    try:
        actual = json.loads(actual_json)
    except (json.JSONDecodeError, RecursionError):
        return False
    return any(_same(actual, want, tolerance) for want in (expected, *also))


def open_r1_lines_match(stdout: str, expected: str) -> bool:
    """open-r1's check: every pair of ``zip(stdout.strip() lines, expected lines)`` is equal after ``strip()``.

    ``zip`` stops at the shorter side, so printing only the first expected line passes.

    Example:
        >>> open_r1_lines_match("1\\n", "1\\n2\\n3\\n")
        True
        >>> open_r1_lines_match("1\\n5\\n", "1\\n2\\n")
        False
    """
    output = stdout.strip()
    return all(got.strip() == want.strip() for got, want in zip(output.split("\n"), expected.split("\n")))  # noqa: B905
