"""grpo-train (real TRL, via remote_reward_funcs) trains with a served reward model next to a standard reward."""

from __future__ import annotations

import math

from conftest import start_server, stop_server
from test_train import SCORE_LINE, finish, grpo_train, overrides, step_logs
from tiny_models import build_tiny_causal_lm, write_tiny_dataset

from reward_server.models.synthetic import build_reward_model


def test_grpo_train_with_a_reward_model_and_accuracy_reward(tmp_path) -> None:
    rm = build_reward_model(tmp_path / "rm", "qwen2")
    server = start_server(tmp_path, "--workers", "1", "--device", "cpu", "--reward-model", f"rm={rm}")
    try:
        tiny = {"model": build_tiny_causal_lm(tmp_path / "tiny"), "data": write_tiny_dataset(tmp_path / "d.jsonl")}
        steps, out = 2, tmp_path / "out"
        rewards = ["rm", {"name": "accuracy_reward", "params": {"solution_field": "answer"}}]
        finish(grpo_train(overrides(tiny, server.address, out, steps, rewards)))
        logged = step_logs(out, steps, "rm")
        assert len(logged) == steps
        for entry in logged:
            # A random RM gives some finite logit for every completion; the service never failed a batch.
            assert math.isfinite(entry["rewards/rm/mean"])
            assert "rewards/accuracy_reward/mean" in entry
            assert entry["reward_service/failed"] == 0
        assert len(SCORE_LINE.findall(server.log())) == steps and "rewards=rm,accuracy_reward" in server.log()
    finally:
        stop_server(server)
