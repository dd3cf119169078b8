"""Plain TRL reward functions, as a training script passes them to ``GRPOTrainer(reward_funcs=[...])``.

Nothing here imports the reward server: ``reward-server --rewards-from examples/trl_rewards.py`` serves every
public function that takes ``completions`` (or ``prompts``), under its ``__name__``, called exactly as TRL
calls it. Helpers start with ``_`` (or take neither argument) and are not served.
"""

from __future__ import annotations

import asyncio
import re


def _text(completion):
    """A completion's text in either of TRL's shapes (a string, or a list of chat messages)."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def _answer(text):
    match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return match.group(1).strip() if match else None


def answer_tag_format(completions, **kwargs):
    """1.0 when the completion holds an <answer>...</answer> block, else 0.0."""
    return [1.0 if _answer(_text(c)) is not None else 0.0 for c in completions]


def exact_answer(completions, solution, **kwargs):
    """1.0 when the answer equals the sample's solution; None (not applicable) when there is no answer block."""
    rewards = []
    for completion, expected in zip(completions, solution, strict=True):
        answer = _answer(_text(completion))
        rewards.append(None if answer is None else float(answer == str(expected).strip()))
    return rewards


def length_penalty(completions, max_chars=200, scale=1.0, **kwargs):
    """-scale × how far a completion runs past max_chars, as a fraction of max_chars (0 when shorter).

    Args:
        max_chars: the length a completion may have for free.
        scale: the penalty for a completion twice as long as max_chars.
    """
    return [-scale * max(0, len(_text(c)) - max_chars) / max_chars for c in completions]


def difficulty_bonus(completions, difficulty, bonus=0.1, **kwargs):
    """bonus × the sample's integer difficulty for completions that answer at all (an int column)."""
    return [
        bonus * level if _answer(_text(c)) is not None else 0.0
        for c, level in zip(completions, difficulty, strict=True)
    ]


def passed_cases_reward(completions, verification_info, log_extra=None, **kwargs):
    """The share of a sample's test cases (verification_info["test_cases"], a dict column) whose expected
    output appears in the answer; logs the number of cases as an extra column."""
    rewards, counts = [], []
    for completion, info in zip(completions, verification_info, strict=True):
        cases = info["test_cases"]
        answer = _answer(_text(completion)) or ""
        rewards.append(sum(case["output"] in answer for case in cases) / len(cases) if cases else None)
        counts.append(len(cases))
    if log_extra is not None:
        log_extra("test_cases", counts)
    return rewards


def prompt_echo_penalty(prompts, completions, **kwargs):
    """-1.0 when the completion repeats the last prompt turn (or the plain prompt) word for word."""
    out = []
    for prompt, completion in zip(prompts, completions, strict=True):
        asked = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        out.append(-1.0 if asked and asked in _text(completion) else 0.0)
    return out


async def judge_reward(prompts, completions, **kwargs):
    """An async reward (an LLM judge would await its HTTP calls here): 0.5 per completion that ends a sentence."""
    await asyncio.sleep(0)
    return [0.5 if _text(c).rstrip().endswith((".", "!", "?", "</answer>")) else 0.0 for c in completions]


def token_count(completions, completion_ids, **kwargs):
    """The number of tokens of each completion (reads completion_ids, so every sample must carry them)."""
    return [float(len(ids)) for ids in completion_ids]
