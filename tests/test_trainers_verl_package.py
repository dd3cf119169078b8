"""verl's own reward path drives ``trainer_client.integrations.verl``, compared with gRPC ``Score`` of the same samples:
the released verl 0.9.1 wheel, configured as the README says (``custom_reward_function.path:
pkg://trainer_client.integrations.verl``, ``name: compute_score``, ``reward_kwargs``) on top of verl's own
``trainer/config/_generated_ppo_trainer.yaml``, moved to ``reward.*`` by verl's ``migrate_legacy_reward_impl``:

- ``RewardLoopManager.compute_rm_score`` (what ``RayPPOTrainer`` calls each step) on a real local Ray instance with 2
  ``RewardLoopWorker`` actors: each actor loads the tokenizer and ``load_reward_manager`` (``get_custom_reward_fn``
  imports this project's module and wraps ``compute_score`` with the ``reward_kwargs``), pads and chunks the batch,
  ``NaiveRewardManager.run_single`` decodes every response and awaits ``compute_score`` under ``asyncio.gather``;
  the manager builds ``rm_scores`` (the score at each response's last valid token) and the ``reward_extra_info``
  arrays from the first sample's keys. The adapter coalesces each actor's samples into one Score call.
- ``verl.workers.reward_manager.batch.BatchRewardManager`` (still shipped in 0.9.1, though its trainer now always
  runs the reward loop) with ``name: compute_score_batch``.

The batch is a ``DataProto`` as the rollout leaves it (left-padded prompts, right-padded responses, an attention
mask, ``data_source``/``reward_model``/``extra_info``), with a real tokenizer (tests/tiny_models); the responses are
the ones the test chose, so the expected rewards are known. One sample fails (the ``boom`` plugin reward raises on
BOOM): it carries ``failure_score`` and ``failed: True``, never NaN.

What is installed, at test time, with ``pip install --no-deps --target`` under ``.venv/trainer-packages/`` (kept for
the next run): the verl wheel (1.7 MB), and the modules this path imports that ``.venv`` lacks: ray 2.60.0 with
msgpack (a 79 MB wheel, shared with the AReaL and NeMo Gym tests; about 10 s to install once), tensordict 0.10.0
(verl pins <= 0.10) with pyvers, omegaconf, orjson and codetiming. Not installed: verl's full dependency set (46
packages, with ray[default], wandb, tensorboard, hydra-core, torchdata), and no CUDA torch: the actors run on CPU with
``.venv``'s torch. About 25 s a run (Ray's start and the two actors' imports), 15 s more for the first installs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from trainer_packages import RAY, REWARDS, boom_server, trainer_package

from reward.v1 import reward_pb2 as pb

VERSION = "0.9.1"
REQUIREMENTS = [f"verl=={VERSION}", "tensordict==0.10.0", "pyvers==0.2.3", "omegaconf==2.4.0", "orjson==3.13.0"]
REQUIREMENTS += ["codetiming==1.4.0"]
NAMES = [r["name"] for r in REWARDS]
COMPLETIONS = [
    "<reasoning>\n6 x 7\n</reasoning>\n<answer>\n42\n</answer>\n",
    "<answer>\n41\n</answer>",
    "It is 42.",
    "<answer>\n42\n</answer> BOOM",
]
N = 8
#: Runs in its own interpreter (Ray, verl's modules), with the packages' folders first on PYTHONPATH.
DRIVER = r"""
import json, os, sys

import numpy as np
import ray
import torch
from omegaconf import OmegaConf, open_dict

sys.path.insert(0, "tests")
from tiny_models import build_tiny_tokenizer

import verl
from verl import DataProto
from verl.experimental.reward_loop import RewardLoopManager, migrate_legacy_reward_impl
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.workers.reward_manager.batch import BatchRewardManager

target, rewards, completions, tokenizer_dir, ray_dir = sys.argv[1:6]
rewards, completions = json.loads(rewards), json.loads(completions)
tokenizer = build_tiny_tokenizer(tokenizer_dir)

config = OmegaConf.load(os.path.join(verl.__path__[0], "trainer/config/_generated_ppo_trainer.yaml"))
with open_dict(config):
    config.actor_rollout_ref.model.path = tokenizer_dir
    config.custom_reward_function.path = "pkg://trainer_client.integrations.verl"
    config.custom_reward_function.name = "compute_score"
    config.custom_reward_function.reward_kwargs = {
        "target": target, "rewards": rewards, "label_field": "answer", "failure_score": -1.0, "window_s": 0.5,
    }
    config.reward_model.num_workers = 2
config = migrate_legacy_reward_impl(config)

n = len(completions)
prompts = [
    tokenizer.apply_chat_template([{"role": "user", "content": f"What is 6 x 7? #{i}"}], tokenize=False,
                                  add_generation_prompt=True)
    for i in range(n)
]
tokenizer.padding_side = "left"
p = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
tokenizer.padding_side = "right"
r = tokenizer([c + tokenizer.eos_token for c in completions], add_special_tokens=False, padding=True,
              return_tensors="pt")


def batch():
    return DataProto.from_dict(
        tensors={"prompts": p.input_ids, "responses": r.input_ids,
                 "input_ids": torch.cat([p.input_ids, r.input_ids], 1),
                 "attention_mask": torch.cat([p.attention_mask, r.attention_mask], 1)},
        non_tensors={"data_source": np.array(["openai/gsm8k"] * n, dtype=object),
                     "reward_model": np.array([{"ground_truth": "42", "style": "rule"}] * n, dtype=object),
                     "extra_info": np.array([{"split": "train", "index": i} for i in range(n)], dtype=object)},
    )


ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_dir,
         runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}})
try:
    out = RewardLoopManager(config).compute_rm_score(batch())
finally:
    ray.shutdown()

with open_dict(config):
    config.reward.custom_reward_function.name = "compute_score_batch"
legacy = BatchRewardManager(tokenizer, 0, get_custom_reward_fn(config))(batch(), return_dict=True)

lengths = r.attention_mask.sum(-1).tolist()
print(json.dumps({
    "decoded": [tokenizer.decode(r.input_ids[i][: lengths[i]], skip_special_tokens=True) for i in range(n)],
    "lengths": lengths,
    "rm_scores": out.batch["rm_scores"].tolist(),
    "extra": {k: v.tolist() for k, v in out.non_tensor_batch.items()},
    "keys": out.meta_info["reward_extra_keys"],
    "batch_scores": legacy["reward_tensor"].tolist(),
    "batch_extra": {k: list(v) for k, v in legacy["reward_extra_info"].items()},
}))
"""


@pytest.fixture(scope="module")
def packages() -> list[Path]:
    return [trainer_package(f"verl-{VERSION}", REQUIREMENTS), trainer_package("ray-2.60.0", RAY)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with boom_server(tmp_path_factory.mktemp("verl"), "--workers", "1") as running:
        yield running


def grpc_score(server, completions: list[str]) -> tuple[list[float], dict[str, list[float]], list[bool]]:
    samples = [pb.Sample(completion=c, fields={"answer": "42"}) for c in completions]
    specs = [pb.RewardSpec(name=r["name"], weight=r.get("weight", 1.0)) for r in REWARDS]
    response = server.stub().Score(pb.ScoreRequest(samples=samples, rewards=specs), timeout=60)
    failed = [False] * len(samples)
    for result in response.results:
        for note in result.notes:
            failed[note.sample_index] |= note.kind == pb.NOTE_KIND_REWARD_ERROR
    scores = {name: list(result.scores) for name, result in zip(NAMES, response.results, strict=True)}
    return list(response.total), scores, failed


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


def test_verl_reward_loop_on_ray_and_the_batch_manager_get_the_grpc_totals(packages, server, tmp_path) -> None:
    completions = [COMPLETIONS[i % len(COMPLETIONS)] for i in range(N)]
    ray_dir = Path("/tmp") / f"ray-verl-{os.getpid()}"  # Ray's socket paths must stay short
    before = server.score_calls()
    try:
        result = subprocess.run(
            [sys.executable, "-c", DRIVER, server.address, json.dumps(REWARDS), json.dumps(completions),
             str(tmp_path / "tokenizer"), str(ray_dir)],
            capture_output=True, text=True, cwd=REPO, timeout=400,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, packages), str(REPO)]),
                 "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"},
        )  # fmt: skip
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-4000:]
    out = json.loads(result.stdout.splitlines()[-1])
    calls = server.score_calls() - before

    assert out["decoded"] == completions  # what NaiveRewardManager decodes is what the test chose
    totals, scores, failed = grpc_score(server, completions)
    expected = [-1.0 if f else (0.0 if math.isnan(t) else t) for t, f in zip(totals, failed, strict=True)]
    assert any(failed) and not any(math.isnan(e) for e in expected)

    # RewardLoopManager.compute_rm_score: each score at its response's last valid token, zeros elsewhere.
    for row, length, want in zip(out["rm_scores"], out["lengths"], expected, strict=True):
        assert row[length - 1] == pytest.approx(want, rel=1e-6)
        assert all(v == 0.0 for j, v in enumerate(row) if j != length - 1)
    assert out["keys"] == ["score", *NAMES, "failed"]
    assert out["extra"]["score"] == pytest.approx(expected)
    assert out["extra"]["failed"] == failed
    for name in NAMES:
        assert all(same(a, b) for a, b in zip(out["extra"][name], scores[name], strict=True)), name
    # Two reward-loop actors, one Score call each, plus the batch manager's one call.
    assert calls == 3, calls

    # BatchRewardManager with compute_score_batch: the same numbers.
    for row, length, want in zip(out["batch_scores"], out["lengths"], expected, strict=True):
        assert row[length - 1] == pytest.approx(want, rel=1e-6)
    assert out["batch_extra"]["score"] == pytest.approx(expected)
    assert out["batch_extra"]["failed"] == failed
