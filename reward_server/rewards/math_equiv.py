"""Mathematical equivalence of the final answer and the reference, checked with math-verify."""

from __future__ import annotations

from functools import lru_cache

from reward_server import settings
from reward_server.declare import sample_reward
from reward_server.registry import SampleScore
from reward_server.rewards.boxed import last_boxed
from reward_server.rewards.math_checks import warm_math_verify
from reward_server.rewards.xml_tags import extract_xml_answer
from reward_server.time_limit import run_with_timeout

__all__ = ["equivalent", "math_equivalence", "warm_math_verify"]


def _parse(text: str) -> list:
    from math_verify import parse  # imported in the helper process only

    # math-verify's own SIGALRM timeouts are off: the time-limit helper enforces the limit.
    parsed = parse(text, parsing_timeout=None)
    return parsed or parse(f"\\boxed{{{text}}}", parsing_timeout=None)


# A GRPO batch repeats each reference once per completion: parse it once per helper process.
# Reusing a parse is safe: verify() only reads its inputs (sympy expressions are immutable, and
# math-verify itself reuses parses through its own small lru_caches).
_parse_gold = lru_cache(maxsize=256)(_parse)


def equivalent(reference: str, answer: str) -> bool | None:
    """math-verify parse + verify of ``reference`` against ``answer`` (run inside the time-limit helper).

    None when the reference does not parse as math: math-verify finds no expression in it, only
    text (e.g. "Answer is forty two."), so no answer can be judged against it.
    """
    from math_verify import verify

    gold = _parse_gold(reference)
    if not any(not isinstance(g, str) for g in gold):
        return None
    if not answer.strip():
        return False
    target = _parse(answer)
    return bool(target and verify(gold, target, timeout_seconds=None))


@sample_reward("math_equivalence", reference_field="answer")
def math_equivalence(completion: str, reference: str, *, value: float = 1.0) -> float | SampleScore:
    """``value`` if the last box (or, without a box, the answer tag) is mathematically equal to the reference.

    A reference that does not parse as math is no ground truth: the sample scores NaN, with a
    note saying so, rather than 0 (a bad label must not punish the policy). Each sample runs
    under a hard time limit (server setting ``math_timeout_s``); a sample over the limit scores
    NaN and is reported in the response notes.

    Args:
        reference_field: sample field holding the reference answer.
        value: score for an equivalent answer.

    Example:
        >>> math_equivalence(r"so \\boxed{\\frac{1}{2}}", "0.5")
        1.0
        >>> math_equivalence("<answer>3</answer>", "4")
        0.0
        >>> math_equivalence(r"\\boxed{42}", "Answer is forty two.").note
        "reference did not parse as math: 'Answer is forty two.'"
    """
    answer = last_boxed(completion)
    if answer is None:
        answer = extract_xml_answer(completion)
    ok = run_with_timeout(
        equivalent, reference, answer, timeout=settings.current().math_timeout_s, warmup=warm_math_verify
    )
    if ok is None:
        return SampleScore(None, note=f"reference did not parse as math: {reference[:200]!r}")
    return value if ok else 0.0
