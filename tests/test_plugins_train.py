"""grpo-train (real TRL, via remote_reward_funcs) trains with a plugin reward exactly as with a built-in one."""

from __future__ import annotations

import math

from conftest import start_server, stop_server
from test_train import SCORE_LINE, finish, grpo_train, overrides, step_logs
from tiny_models import build_tiny_causal_lm, write_tiny_dataset

PLUGIN = '''
def completion_chars(completions, answer, scale=0.01, **kwargs):
    """scale x the characters of each (conversational) completion, plus 1 when the sample has an answer."""
    return [scale * len(c[0]["content"]) + (1.0 if a else 0.0) for c, a in zip(completions, answer)]
'''


def test_grpo_train_with_a_plugin_reward(tmp_path) -> None:
    (tmp_path / "team.py").write_text(PLUGIN)
    server = start_server(tmp_path, "--workers", "1", "--rewards-from", str(tmp_path / "team.py"))
    try:
        tiny = {"model": build_tiny_causal_lm(tmp_path / "tiny"), "data": write_tiny_dataset(tmp_path / "d.jsonl")}
        steps, out = 2, tmp_path / "out"
        rewards = [{"name": "completion_chars", "params": {"scale": 0.1}}, "xmlcount_reward_func"]
        finish(grpo_train(overrides(tiny, server.address, out, steps, rewards)))
        logged = step_logs(out, steps, "completion_chars")
        assert len(logged) == steps
        for entry in logged:
            # Every score is 1 + 0.1 x a length: the plugin ran on TRL's conversational completions and fields.
            assert math.isfinite(entry["rewards/completion_chars/mean"]) and entry["rewards/completion_chars/mean"] >= 1
            assert entry["reward_service/failed"] == 0
        calls = SCORE_LINE.findall(server.log())
        assert len(calls) == steps and "rewards=completion_chars,xml_tag_count" in server.log()
    finally:
        stop_server(server)
