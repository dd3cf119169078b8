"""A judge's answer as a number: the expected value over its labels, the label it chose, or a number it wrote.

Each function raises ValueError with a reason for people when the answer has not the expected form; the
judge reward turns that into the sample's NaN and note (never a 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def label_probabilities(top_logprobs: Sequence[tuple[str, float]], labels: Sequence[str]) -> dict[str, float]:
    """p(label) from the first token's top logprobs, normalised over the labels (absent labels get 0).

    Tokens are matched to labels exactly (a token ``" A"`` is not the label ``"A"``); tokens that decode to the
    same text add up.

    Example:
        >>> probs = label_probabilities([("B", math.log(0.6)), ("A", math.log(0.2)), ("x", math.log(0.2))], "AB")
        >>> {k: round(v, 6) for k, v in probs.items()}
        {'A': 0.25, 'B': 0.75}
    """
    wanted = set(labels)
    found = [(token, lp) for token, lp in top_logprobs if token in wanted and math.isfinite(lp)]
    if not found:
        shown = ", ".join(repr(t) for t, _ in top_logprobs[:10]) or "none"
        raise ValueError(f"no label among the first token's top logprobs ({shown})")
    top = max(lp for _, lp in found)  # shifted, so that tiny probabilities do not all underflow to 0
    mass = dict.fromkeys(labels, 0.0)
    for token, lp in found:
        mass[token] += math.exp(lp - top)
    total = math.fsum(mass.values())
    return {label: p / total for label, p in mass.items()}


def expected_score(
    top_logprobs: Sequence[tuple[str, float]], choices: Mapping[str, float], answer: str, first_token: str
) -> float:
    """Σ p(label) × value, G-Eval style, from the first generated token's top logprobs.

    A label the model chose whose first token is not the whole label spans several tokens: its probability
    is not one token's, so the expected value cannot be read off (use single-token labels, or ``argmax``).

    Example:
        >>> expected_score([("A", math.log(0.3)), ("B", math.log(0.7))], {"A": 1.0, "B": 0.0}, "B", "B")
        0.3
    """
    if answer in choices and first_token and first_token != answer:
        raise ValueError(
            f"label {answer!r} is several tokens for this model (its first token is {first_token!r}): "
            "use single-token labels, or score: argmax"
        )
    probs = label_probabilities(top_logprobs, list(choices))
    return math.fsum(p * choices[label] for label, p in probs.items())


def argmax_score(answer: str, choices: Mapping[str, float]) -> float:
    """The value of the label the model answered (surrounding whitespace ignored).

    Example:
        >>> argmax_score(" A\\n", {"A": 1.0, "B": 0.0})
        1.0
    """
    label = answer if answer in choices else answer.strip()
    if label not in choices:
        raise ValueError(f"the answer {answer[:200]!r} is none of the labels {', '.join(map(repr, choices))}")
    return choices[label]
