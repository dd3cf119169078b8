"""grpo-train (real TRL, via remote_reward_funcs) trains with a served reward model next to a standard reward."""

from __future__ import annotations

import json
import math

from conftest import start_server, stop_server
from test_train import SCORE_LINE, grpo_train, overrides
from tiny_models import build_tiny_causal_lm, write_tiny_dataset

from reward_server.models.synthetic import build_reward_model


def test_grpo_train_with_a_reward_model_and_accuracy_reward(tmp_path) -> None:
    rm = build_reward_model(tmp_path / "rm", "qwen2")
    server = start_server(tmp_path, "--workers", "1", "--device", "cpu", "--reward-model", f"rm={rm}")
    try:
        tiny = {"model": build_tiny_causal_lm(tmp_path / "tiny"), "data": write_tiny_dataset(tmp_path / "d.jsonl")}
        steps, out = 2, tmp_path / "out"
        args = overrides(tiny, server.address, out, steps)
        rewards = json.dumps(["rm", {"name": "accuracy_reward", "params": {"solution_field": "answer"}}])
        args[args.index(next(a for a in args if a.startswith("rewards=")))] = f"rewards={rewards}"
        process = grpo_train(args)
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-4000:]
        state = json.loads((out / f"checkpoint-{steps}" / "trainer_state.json").read_text())
        logged = [e for e in state["log_history"] if "rewards/rm/mean" in e]
        assert len(logged) == steps
        for entry in logged:
            # A random RM gives some finite logit for every completion; the service never failed a batch.
            assert math.isfinite(entry["rewards/rm/mean"])
            assert "rewards/accuracy_reward/mean" in entry
            assert entry["reward_service/failed"] == 0
        assert len(SCORE_LINE.findall(server.log())) == steps and "rewards=rm,accuracy_reward" in server.log()
    finally:
        stop_server(server)
