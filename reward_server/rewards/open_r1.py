"""open-r1's rewards (``src/open_r1/rewards.py``), as ``open_r1_<registry key>``, with open-r1's numbers.

Read from huggingface/open-r1's main branch at commit 1416fa0 (2026-04-02; its rewards.py last changed in
c1e1192); the params' defaults are those of open-r1's ``GRPOScriptArguments`` (what its registry keys give
a recipe). Where open-r1 differs from TRL we serve open-r1: accuracy's None (an unparsable gold, or
math-verify's verify raising) is NaN with a not-applicable note; cosine and length still parse the gold
with LaTeX extraction only, score an unparsable gold 1.0 (cosine) or count it correct (length) and call
verify answer-first; cosine length is in characters and not clamped at max_len; repetition n-grams are of
lower-cased words (``language="en"``; open-r1's jieba-split ``zh`` is refused). Where open-r1 would crash
the whole batch (verify raising in cosine/length) one sample scores NaN with a reward-error note.
``tests/test_rewards_open_r1.py`` checks every reward against a copy of that commit's function.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence

from reward_server.cancellation import RequestCancelled, cancelled
from reward_server.declare import batch_reward, sample_reward
from reward_server.outcomes import Note, NoteKind, error_note
from reward_server.registry import BatchResult, Prompt, SampleScore
from reward_server.rewards.math_checks import open_r1_accuracy_verdict, open_r1_verdict, time_limited
from reward_server.rewards.param_checks import repetition_params
from reward_server.time_limit import SampleTimeout

_FORMAT = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL | re.MULTILINE)
# No flags, as open-r1: ``^`` anchors at the start of the text only.
_STEPS = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)")
_TAGS = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")


@sample_reward("open_r1_accuracy", solution_field="solution")
def open_r1_accuracy(completion: str, solution: str) -> SampleScore:
    """1 if math-verify finds the answer equal to the solution, else 0; None (NaN) when the solution does not parse.

    open-r1's ``accuracy_reward``: the solution parsed with math-verify's default extraction (first
    match: a bare ``42`` parses), the completion with LaTeX extraction (boxed first, every box, units
    normalized), then ``verify(gold, answer)``; a verify that raises is None too. A None says why in
    its note (not applicable: open-r1 skips the sample).

    Args:
        solution_field: sample field holding the solution (open-r1's ``solution`` column).

    Example:
        >>> open_r1_accuracy(r"so \\boxed{\\frac{1}{3}}", r"$\\frac{1}{3}$").score
        1.0
        >>> open_r1_accuracy(r"so \\boxed{41}", "42").score
        0.0
        >>> open_r1_accuracy(r"so \\boxed{2}", "Answer is forty two.").score is None
        True
    """
    score, why = time_limited(open_r1_accuracy_verdict, solution, completion)
    return SampleScore(score, note=why, kind=NoteKind.NOT_APPLICABLE)


@sample_reward("open_r1_format")
def open_r1_format(completion: str) -> float:
    """1 if the completion is ``<think>\\n…\\n</think>\\n<answer>\\n…\\n</answer>`` (up to a line end), else 0.

    open-r1's ``format_reward``: ``^<think>\\n.*?\\n</think>\\n<answer>\\n.*?\\n</answer>$``,
    DOTALL and MULTILINE, matched at the start (so text may follow on later lines).

    Example:
        >>> open_r1_format("<think>\\nhm\\n</think>\\n<answer>\\n42\\n</answer>")
        1.0
        >>> open_r1_format("<think>hm</think><answer>42</answer>")
        0.0
    """
    return 1.0 if _FORMAT.match(completion) else 0.0


@sample_reward("open_r1_tag_count")
def open_r1_tag_count(completion: str) -> float:
    """0.25 for each of ``<think>\\n``, ``\\n</think>\\n``, ``\\n<answer>\\n``, ``\\n</answer>`` occurring exactly once.

    open-r1's ``tag_count_reward``.

    Example:
        >>> open_r1_tag_count("<think>\\nhm\\n</think>\\n<answer>\\n42\\n</answer>")
        1.0
        >>> open_r1_tag_count("<think>\\nhm")
        0.25
    """
    return sum(0.25 for tag in _TAGS if completion.count(tag) == 1)


@sample_reward("open_r1_reasoning_steps")
def open_r1_reasoning_steps(completion: str) -> float:
    """min(1, steps / 3), steps = matches of ``Step N:``, a leading ``N.``, ``\\n-``, ``\\n*``, First, … Finally,.

    open-r1's ``reasoning_steps_reward``.

    Example:
        >>> open_r1_reasoning_steps("Step 1: add.\\nStep 2: carry.\\nFinally, done.")
        1.0
        >>> open_r1_reasoning_steps("First, think.")
        0.3333333333333333
    """
    return min(1.0, len(_STEPS.findall(completion)) / 3)


@sample_reward("open_r1_cosine", solution_field="solution")
def open_r1_cosine(
    completion: str,
    solution: str,
    *,
    min_value_wrong: float = 0.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    max_len: int = 1000,
) -> float:
    """Correctness scaled by the length in characters on a cosine schedule; 1.0 when the solution does not parse.

    open-r1's ``get_cosine_scaled_reward``: progress = len(completion) / max_len, not clamped
    (past max_len the cosine climbs again, as in open-r1); correct: min_value_correct +
    ½(max_value_correct − min_value_correct)(1 + cos(π·progress)), wrong: the same with
    max_value_wrong and min_value_wrong. Defaults are open-r1's recipe arguments (cosine_*).

    Args:
        solution_field: sample field holding the solution (open-r1's ``solution`` column).
        min_value_wrong: score of a wrong, empty completion (open-r1's function default is -1.0, its recipe's 0.0).
        max_value_wrong: score of a wrong completion of max_len characters.
        min_value_correct: score of a correct completion of max_len characters.
        max_value_correct: score of a correct, empty completion.
        max_len: length in characters at which the schedule reaches its far end.

    Example:
        >>> open_r1_cosine(r"\\boxed{7}" + " " * 491, "$7$")
        0.75
    """
    if max_len == 0:
        raise ValueError("max_len must not be 0")
    verdict = time_limited(open_r1_verdict, solution, completion)
    if verdict is None:
        return 1.0
    cosine = math.cos(len(completion) / max_len * math.pi)
    low, high = (min_value_correct, max_value_correct) if verdict else (max_value_wrong, min_value_wrong)
    return float(low + 0.5 * (high - low) * (1.0 + cosine))


#: The languages open-r1's repetition penalty splits into words; ``zh`` (jieba) is not served here.
REPETITION_LANGUAGES = ("en",)


def repetition_language_params(*, ngram_size: int, max_penalty: float, language: str, **_: object) -> None:
    """open-r1's ``get_repetition_penalty_reward`` checks, its ``language`` among them (refused up front).

    Example:
        >>> repetition_language_params(ngram_size=3, max_penalty=-1.0, language="zh")
        Traceback (most recent call last):
        ...
        ValueError: language 'zh' is not supported here: only 'en' (open-r1 splits 'zh' with jieba, not installed)
    """
    repetition_params(ngram_size=ngram_size, max_penalty=max_penalty)
    if language not in REPETITION_LANGUAGES:
        raise ValueError(
            f"language {language!r} is not supported here: only 'en' (open-r1 splits 'zh' with jieba, not installed)"
        )


@sample_reward("open_r1_repetition_penalty", check=repetition_language_params)
def open_r1_repetition_penalty(
    completion: str, *, ngram_size: int = 3, max_penalty: float = -1.0, language: str = "en"
) -> float:
    """(1 − unique / total n-grams of lower-cased whitespace words) × max_penalty; 0 below ngram_size words.

    open-r1's ``get_repetition_penalty_reward`` (words, not tokens: TRL's ``repetition_penalty_reward`` uses tokens).

    Args:
        ngram_size: words per n-gram (open-r1's repetition_n_grams).
        max_penalty: score of a fully repetitive completion, not positive (open-r1's repetition_max_penalty).
        language: how the text is split into words: only "en" (lower-cased, split on whitespace) is served.

    Example:
        >>> open_r1_repetition_penalty("the cat the cat the cat", ngram_size=2)
        -0.6
    """
    repetition_language_params(ngram_size=ngram_size, max_penalty=max_penalty, language=language)
    words = completion.lower().split()
    if not completion or len(words) < ngram_size:
        return 0.0
    ngrams = list(zip(*[words[i:] for i in range(ngram_size)], strict=False))
    return (1 - len(set(ngrams)) / len(ngrams)) * max_penalty


def _group_key(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


@batch_reward("open_r1_length", reads=("prompts",), solution_field="solution")
def open_r1_length(
    completions: list[str], solutions: list[str], *, per_prompt: bool = False, prompts: Sequence[Prompt] = ()
) -> BatchResult:
    """Kimi 1.5's length reward: λ = 0.5 − (len − min) / (max − min) of character lengths; correct λ, wrong min(0, λ).

    All 0 when every length is equal. open-r1's ``len_reward`` normalizes over the batch it
    receives: here, by default, the samples of one request. ``per_prompt=true`` normalizes
    within each group of samples that share a prompt, as the Kimi 1.5 report means it. A
    solution that does not parse counts as correct (open-r1). A sample whose math-verify call
    fails or times out scores NaN; its length still counts.

    Args:
        solution_field: sample field holding the solution (open-r1's ``solution`` column).
        per_prompt: normalize the lengths within each prompt's samples instead of over the request.

    Example:
        >>> open_r1_length([r"\\boxed{1}", r"\\boxed{1} ok.", r"\\boxed{2} because"], ["$1$"] * 3).scores
        [0.5, 0.0, -0.5]
    """
    n = len(completions)
    result = BatchResult([math.nan] * n)
    correct: list[bool | None] = []
    for i, (completion, solution) in enumerate(zip(completions, solutions, strict=True)):
        if cancelled():
            raise RequestCancelled(f"open_r1_length: request cancelled after {i} of {n} samples")
        try:
            verdict = time_limited(open_r1_verdict, solution, completion)
            correct.append(True if verdict is None else verdict)
        except SampleTimeout as exc:
            correct.append(None)
            result.notes[i] = Note(str(exc), NoteKind.TIME_LIMIT)
        except Exception as exc:  # noqa: BLE001 - open-r1 would fail the batch; here one sample is NaN
            correct.append(None)
            result.notes[i] = error_note(exc)
    groups: dict[str, list[int]] = defaultdict(list)
    for i in range(n):
        groups[_group_key(prompts[i]) if per_prompt else ""].append(i)
    for rows in groups.values():
        lengths = [len(completions[i]) for i in rows]
        shortest, longest = min(lengths), max(lengths)
        for i, length in zip(rows, lengths, strict=True):
            if correct[i] is None:
                continue
            if longest == shortest:
                result.scores[i] = 0.0
                continue
            lam = 0.5 - (length - shortest) / (longest - shortest)
            result.scores[i] = float(lam if correct[i] else min(0, lam))
    return result
