"""A plugin file for the outcome tests (issue 18): one reward per kind of NaN, written by the tests that serve it."""

from __future__ import annotations

from pathlib import Path

CODE = '''
from reward_server import SampleScore, sample_reward
from reward_server.errors import Unavailable


def broken_reward(completions, **kwargs):
    """Divides by zero on every batch: a bug in the reward's own code."""
    return [len(c) / 0 for c in completions]


def prompt_chars(prompts, completions, **kwargs):
    """The prompt's length: reads TRL's prompts, which come in one shape per batch."""
    return [float(len(p if isinstance(p, str) else p[-1]["content"])) for p in prompts]


def short_log(completions, log_extra=None, **kwargs):
    """Scores every completion 0.5 but logs a column one value short: the scores stand, the column is dropped."""
    log_extra("verdict", ["ok"] * (len(completions) - 1))
    return [0.5 for _ in completions]


@sample_reward("judge")
def judge(completion: str) -> float | SampleScore | None:
    """1.0; a completion "down" finds the judge down, one "n/a" is not judged."""
    if completion == "down":
        raise Unavailable("judge endpoint is down")
    if completion == "n/a":
        return SampleScore(None, note="nothing to judge")
    return 1.0
'''


def write_plugin(folder: Path) -> Path:
    """The plugin as ``folder/outcome_rewards.py``."""
    path = folder / "outcome_rewards.py"
    path.write_text(CODE)
    return path
