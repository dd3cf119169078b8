"""math-verify as TRL's and open-r1's rewards call it, every call under a hard time limit.

TRL switches math-verify's own (SIGALRM) time limits off whenever a reward runs off the main
thread, so one pathological answer can hang a training step. Here each sample's parse + verify
runs in a helper process (:func:`reward_server.time_limit.run_with_timeout`), which is killed
after ``math_timeout_s`` from whichever thread called it; math-verify's own limits stay off.
The extraction settings are exactly the ones each project passes (read from TRL 1.16's
``trl/rewards/accuracy_rewards.py`` and open-r1's ``src/open_r1/rewards.py`` on its main branch at 1416fa0).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from reward_server import settings
from reward_server.time_limit import SampleTimeout, run_with_timeout

#: Rewards whose samples call the math time-limit helper: the worker's start-up warms it instead of scoring them.
SANDBOXED = frozenset(
    {
        "math_equivalence",
        "accuracy_reward",
        "reasoning_accuracy_reward",
        "cosine_scaled_reward",
        "open_r1_accuracy",
        "open_r1_cosine",
        "open_r1_length",
    }
)
#: What TRL logs for a sample whose gold does not parse, or whose answer does not.
UNPARSEABLE, SKIPPED = "[unparseable]", "[skipped]"


def warm_math_verify() -> None:
    """Import math-verify (and sympy) in a fresh helper process, and build every extraction config used here."""
    import logging

    import math_verify  # noqa: F401

    # It warns on every call that its own timeouts are off; the helper process is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # open-r1 passes equations=True, which latex2sympy2 logs as deprecated on every parse (same numbers).
    logging.getLogger("latex2sympy2_extended.math_normalization").setLevel(logging.ERROR)
    # math-verify compiles its extraction patterns per config on first use (tenths of a second each).
    trl_verdict("1", r"\boxed{1}")
    open_r1_accuracy_verdict("1", r"\boxed{1}")
    open_r1_verdict("1", r"\boxed{1}")


@lru_cache(maxsize=1)
def _trl_answer_config() -> list:
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig

    # TRL's accuracy_reward / reasoning_accuracy_reward: boxed tried first, no bare-text extraction.
    return [
        LatexExtractionConfig(
            normalization_config=NormalizationConfig(units=True),
            boxed_match_priority=0,
            try_extract_without_anchor=False,
        )
    ]


@lru_cache(maxsize=256)
def _trl_gold(solution: str) -> list:
    # A GRPO batch repeats each solution once per completion: parse it once per helper process.
    # Reuse is safe: verify() only reads its inputs (math-verify caches parses the same way).
    from math_verify import parse

    return parse(solution, parsing_timeout=None)


def trl_verdict(solution: str, content: str) -> tuple[float | None, str, str]:
    """TRL's accuracy check of one sample (run in the time-limit helper): (score or None, gold_parsed, answer_parsed).

    None when the gold does not parse (TRL skips the sample); the two strings are what TRL logs.
    """
    from math_verify import parse, verify

    gold = _trl_gold(solution)
    if not gold:
        return None, UNPARSEABLE, SKIPPED
    answer = parse(content, extraction_config=_trl_answer_config(), extraction_mode="first_match", parsing_timeout=None)
    score = float(verify(gold, answer, timeout_seconds=None))
    return score, str(gold), str(answer) if answer else UNPARSEABLE


@lru_cache(maxsize=4)
def _open_r1_answer_config(boxed: Any) -> list:
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig

    # open-r1's accuracy_reward passes boxed="all", its len_reward and cosine reward boxed=True.
    normalization = NormalizationConfig(
        nits=False, malformed_operators=False, basic_latex=True, equations=True, boxed=boxed, units=True
    )
    return [
        LatexExtractionConfig(
            normalization_config=normalization, boxed_match_priority=0, try_extract_without_anchor=False
        )
    ]


@lru_cache(maxsize=256)
def _open_r1_gold(solution: str, latex_only: bool) -> list:
    from math_verify import LatexExtractionConfig, parse

    # open-r1's accuracy_reward parses the gold with math-verify's default extraction (a bare 42 parses);
    # its len_reward and cosine reward still pass LaTeX extraction only (a bare 42 does not).
    if latex_only:
        return parse(
            solution, extraction_mode="first_match", extraction_config=[LatexExtractionConfig()], parsing_timeout=None
        )
    return parse(solution, extraction_mode="first_match", parsing_timeout=None)


def open_r1_accuracy_verdict(solution: str, content: str) -> tuple[float | None, str]:
    """open-r1's ``accuracy_reward`` on one sample (run in the time-limit helper): (score, "") or (None, why).

    As open-r1's main branch: the gold parsed with math-verify's default extraction, ``verify(gold,
    answer)``; an unparsable gold, or a verify that raises, is None (open-r1 skips the sample).
    """
    from math_verify import parse, verify

    gold = _open_r1_gold(solution, False)
    if not gold:
        return None, f"solution did not parse as math (open-r1: None, skipped): {solution[:200]!r}"
    answer = parse(
        content, extraction_config=_open_r1_answer_config("all"), extraction_mode="first_match", parsing_timeout=None
    )
    try:
        return float(verify(gold, answer, timeout_seconds=None)), ""
    except Exception as exc:  # noqa: BLE001 - open-r1 catches every error of verify and skips the sample
        return None, f"math-verify's verify raised {type(exc).__name__}: {exc} (open-r1: None, skipped)"


def open_r1_verdict(solution: str, content: str) -> bool | None:
    """open-r1's correctness check in ``len_reward`` and the cosine reward (run in the time-limit helper).

    None when the gold does not parse with LaTeX extraction. ``verify(answer, gold)``, answer first,
    as open-r1 calls it there; an error of verify is let through (open-r1 fails the batch).
    """
    from math_verify import parse, verify

    gold = _open_r1_gold(solution, True)
    if not gold:
        return None
    answer = parse(
        content, extraction_config=_open_r1_answer_config(True), extraction_mode="first_match", parsing_timeout=None
    )
    return bool(verify(answer, gold, timeout_seconds=None))


def time_limited(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in this thread's math time-limit helper under the ``math_timeout_s`` hard limit.

    Example:
        >>> time_limited(trl_verdict, "1/2", r"so \\boxed{0.5}")
        (1.0, "[1/2, '1/2']", "[0.500000000000000, '0.5']")
    """
    try:
        return run_with_timeout(fn, *args, timeout=settings.current().math_timeout_s, warmup=warm_math_verify)
    except SampleTimeout as exc:
        raise SampleTimeout(f"math-verify: {exc}") from None
