"""Mathematical equivalence of the final answer and the reference, checked with math-verify."""

from __future__ import annotations

from functools import lru_cache

from reward_server import settings
from reward_server.declare import sample_reward
from reward_server.rewards.boxed import last_boxed
from reward_server.rewards.xml_tags import extract_xml_answer
from reward_server.sandbox import run_with_timeout


def warm_math_verify() -> None:
    """Import math-verify (and sympy) in a fresh sandbox before it takes timed calls."""
    import logging

    import math_verify  # noqa: F401

    # It warns on every call that its own timeouts are off; the sandbox is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)


def _parse(text: str) -> list:
    from math_verify import parse  # imported in the helper process only

    # math-verify's own SIGALRM timeouts are off: the sandbox enforces the limit.
    parsed = parse(text, parsing_timeout=None)
    return parsed or parse(f"\\boxed{{{text}}}", parsing_timeout=None)


# A GRPO batch repeats each reference once per completion: parse it once per sandbox process.
# Reusing a parse is safe: verify() only reads its inputs (sympy expressions are immutable, and
# math-verify itself reuses parses through its own small lru_caches).
_parse_gold = lru_cache(maxsize=256)(_parse)


def equivalent(reference: str, answer: str) -> bool:
    """math-verify parse + verify of ``reference`` against ``answer`` (run inside the sandbox)."""
    from math_verify import verify

    gold, target = _parse_gold(reference), _parse(answer)
    return bool(gold and target and verify(gold, target, timeout_seconds=None))


@sample_reward("math_equivalence", reference_field="answer")
def math_equivalence(completion: str, reference: str, *, value: float = 1.0) -> float:
    """``value`` if the last box (or, without a box, the answer tag) is mathematically equal to the reference.

    Each sample runs under a hard time limit (server setting ``math_timeout_s``); a sample
    over the limit scores NaN and is reported in the response notes.

    Args:
        reference_field: sample field holding the reference answer.
        value: score for an equivalent answer.

    Example:
        >>> math_equivalence(r"so \\boxed{\\frac{1}{2}}", "0.5")
        1.0
        >>> math_equivalence("<answer>3</answer>", "4")
        0.0
    """
    answer = last_boxed(completion)
    if answer is None:
        answer = extract_xml_answer(completion)
    if not answer.strip():
        return 0.0
    ok = run_with_timeout(
        equivalent, reference, answer, timeout=settings.current().math_timeout_s, warmup=warm_math_verify
    )
    return value if ok else 0.0
