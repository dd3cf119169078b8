"""TRL's own rewards (``trl.rewards`` of TRL 1.16), under the names TRL logs them, with TRL's numbers.

Each function here computes what TRL's does for one sample; ``tests/test_rewards_trl.py`` checks
that against TRL's functions. Where TRL returns None (a gold solution that does not parse) the
score is None (NaN on the wire), with a note. What differs: math-verify runs under the server's
hard per-sample limit from any thread (TRL drops its limits off the main thread), and TRL's
factory-only params (``max_len``, ``max_completion_len``, ``soft_punish_cache``) get defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from reward_server.declare import sample_reward
from reward_server.registry import SampleScore
from reward_server.rewards.math_checks import time_limited, trl_verdict
from reward_server.rewards.param_checks import positive_max_len, repetition_params

_THINK = re.compile(r"^<think>(?!.*<think>)(.*?)</think>.*$", re.DOTALL | re.MULTILINE)
_INCOMPLETE = "[incomplete reasoning]"


def _accuracy(completion: str, solution: str) -> SampleScore:
    score, gold, answer = time_limited(trl_verdict, solution, completion)
    note = "" if score is not None else f"solution did not parse as math (TRL: None, skipped): {solution[:200]!r}"
    return SampleScore(score, {"solution": solution, "gold_parsed": gold, "answer_parsed": answer}, note)


@sample_reward("accuracy_reward", solution_field="solution")
def accuracy_reward(completion: str, solution: str) -> SampleScore:
    """1 if math-verify finds the completion's answer equal to the solution, else 0; None if the solution won't parse.

    As TRL's ``accuracy_reward``: the solution is parsed with math-verify's defaults; the
    completion with LaTeX extraction only (boxed first, units normalized, first match). Logs
    TRL's extra columns ``solution``, ``gold_parsed`` and ``answer_parsed``.

    Args:
        solution_field: sample field holding the solution (TRL's ``solution`` column).

    Example:
        >>> accuracy_reward(r"My answer is \\boxed{\\frac{1}{3}}", r"\\frac{1}{3}").score
        1.0
        >>> accuracy_reward(r"\\boxed{42}", "Answer is forty two.").extras["gold_parsed"]
        '[unparseable]'
    """
    return _accuracy(completion, solution)


@sample_reward("reasoning_accuracy_reward", solution_field="solution")
def reasoning_accuracy_reward(
    completion: str, solution: str, *, reasoning_delimiters: tuple[str, ...] = ("</think>",)
) -> SampleScore:
    """``accuracy_reward`` on the text after the reasoning; 0 when no delimiter occurs (incomplete reasoning).

    As TRL's ``reasoning_accuracy_reward``: the first delimiter (in list order) that occurs in
    the completion splits it, and the text after its last occurrence is checked.

    Args:
        solution_field: sample field holding the solution (TRL's ``solution`` column).
        reasoning_delimiters: strings that end the reasoning (TRL's default ``["</think>"]``).

    Example:
        >>> reasoning_accuracy_reward(r"<think>hm</think> The answer is \\boxed{\\frac{1}{3}}", r"\\frac{1}{3}").score
        1.0
        >>> reasoning_accuracy_reward(r"<think> partial \\boxed{\\frac{1}{3}}", r"\\frac{1}{3}").score
        0.0
    """
    for delimiter in reasoning_delimiters:
        if delimiter in completion:
            return _accuracy(completion.split(delimiter)[-1], solution)
    # TRL scores 0 rather than None here, to penalize reasoning that never ends.
    extras = {"solution": solution, "gold_parsed": _INCOMPLETE, "answer_parsed": _INCOMPLETE}
    return SampleScore(0.0, extras)


@sample_reward("think_format_reward")
def think_format_reward(completion: str) -> float:
    """1 if the completion starts with ``<think>``, holds no second ``<think>`` and closes it with ``</think>``, else 0.

    TRL's pattern ``^<think>(?!.*<think>)(.*?)</think>.*$`` (DOTALL, MULTILINE), matched at the start.

    Example:
        >>> think_format_reward("<think>\\nThis is my reasoning.\\n</think>\\nThis is my answer.")
        1.0
        >>> think_format_reward("<think>\\nThis is my reasoning.\\nThis is my answer.")
        0.0
    """
    return 1.0 if _THINK.match(completion) else 0.0


@sample_reward("cosine_scaled_reward", reads=("completion_ids",), check=positive_max_len, solution_field="solution")
def cosine_scaled_reward(
    completion: str,
    solution: str,
    *,
    max_len: int = 1000,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    completion_ids: Sequence[int] = (),
) -> float | None:
    """Correctness (as accuracy_reward) scaled by the length in tokens on a cosine schedule; None if unparsable gold.

    progress = min(len(completion_ids) / max_len, 1); a correct completion scores from
    max_value_correct (no tokens) down to min_value_correct (max_len tokens and more), a wrong one
    from min_value_wrong up to max_value_wrong. As TRL's ``get_cosine_scaled_reward``.

    Args:
        solution_field: sample field holding the solution (TRL's ``solution`` column).
        max_len: length in tokens at which the schedule ends (TRL has no default: set your max_completion_length).
        min_value_wrong: score of a wrong completion with no tokens.
        max_value_wrong: score of a wrong completion of max_len tokens.
        min_value_correct: score of a correct completion of max_len tokens.
        max_value_correct: score of a correct completion with no tokens.

    Example:
        >>> cosine_scaled_reward(r"\\boxed{\\frac{1}{3}}", r"\\frac{1}{3}", max_len=100, completion_ids=[1] * 50)
        0.75
        >>> cosine_scaled_reward(r"\\boxed{\\frac{1}{2}}", r"\\frac{1}{3}", max_len=100, completion_ids=[1] * 50)
        -0.75
    """
    positive_max_len(max_len=max_len)
    correct, _, _ = time_limited(trl_verdict, solution, completion)
    if correct is None:
        return None
    cosine = math.cos(min(len(completion_ids) / max_len, 1.0) * math.pi)
    low, high = (min_value_correct, max_value_correct) if correct else (max_value_wrong, min_value_wrong)
    return float(low + 0.5 * (high - low) * (1.0 + cosine))


@sample_reward("repetition_penalty_reward", reads=("completion_ids",), check=repetition_params)
def repetition_penalty_reward(
    completion: str, *, ngram_size: int = 3, max_penalty: float = -1.0, completion_ids: Sequence[int] = ()
) -> float:
    """(1 − unique / total token n-grams) × max_penalty; 0 for completions shorter than ngram_size tokens.

    As TRL's ``get_repetition_penalty_reward``: n-grams of the completion's token ids.

    Args:
        ngram_size: tokens per n-gram.
        max_penalty: score of a fully repetitive completion (not positive).

    Example:
        >>> repetition_penalty_reward("", ngram_size=2, completion_ids=[5, 5, 5, 5, 5])
        -0.75
        >>> repetition_penalty_reward("", ngram_size=2, completion_ids=[1, 2, 3, 4])
        0.0
    """
    repetition_params(ngram_size=ngram_size, max_penalty=max_penalty)
    ids = list(completion_ids)
    if len(ids) < ngram_size:
        return 0.0
    ngrams = list(zip(*[ids[i:] for i in range(ngram_size)], strict=False))
    scaling = 1 - len(set(ngrams)) / len(ngrams)
    return scaling * max_penalty if scaling else 0.0


@sample_reward("soft_overlong_punishment_reward", reads=("completion_ids",))
def soft_overlong_punishment_reward(
    completion: str,
    *,
    max_completion_len: int = 20480,
    soft_punish_cache: int = 4096,
    completion_ids: Sequence[int] = (),
) -> float:
    """DAPO's soft overlong punishment of the length in tokens: 0 to max − cache, then down to −1 at max, −1 beyond.

    As TRL's ``get_soft_overlong_punishment``; the defaults are the DAPO paper's (TRL has none).

    Args:
        max_completion_len: L_max, the longest completion not punished with −1.
        soft_punish_cache: L_cache, the length of the linear ramp before L_max (0 = no ramp).

    Example:
        >>> soft_overlong_punishment_reward("", max_completion_len=100, soft_punish_cache=20, completion_ids=[1] * 90)
        -0.5
    """
    length, start = len(completion_ids), max_completion_len - soft_punish_cache
    if length <= start:
        return 0.0
    if length <= max_completion_len:
        return (start - length) / soft_punish_cache
    return -1.0
