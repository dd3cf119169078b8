"""AReaL's own rollout code drives ``trainer_client.integrations.areal.reward_fn``, compared with gRPC ``Score`` of the
same samples: the released areal 1.0.4 wheel's ``RLVRWorkflow`` (``reward_fn="trainer_client.integrations.areal.
reward_fn"``, a string, as the README says) under ``GroupedRolloutWorkflow`` (4 rollouts per prompt), its episodes
run concurrently in an ``asyncio.gather`` as ``WorkflowExecutor`` runs them, with its ``workflow_context`` set:

- ``arun_episode`` imports the function with ``import_from_string`` and wraps it in ``AsyncRewardWrapper``, which runs
  ``reward_fn(prompt_str, completions_str, input_tokens, output_tokens, **data)`` in AReaL's shared
  ``ProcessPoolExecutor`` (fork, as on Linux) under its 15 s ``wait_for``, 3 retries; the adapter connects in the pool
  process and reads its settings from ``REWARD_SERVICE_*`` there;
- the completion is ``tokenizer.decode(output_tokens)``, so it ends in ``<|im_end|>``, which the adapter cuts;
- the reward becomes ``torch.tensor(reward)`` in the episode's ``rewards``;
- a sample whose reward fails raises ``RewardFailed`` (after AReaL's retries), and ``GroupedRolloutWorkflow``'s gather
  fails its whole group, which ``WorkflowExecutor`` then rejects: nothing is trained on a made-up reward.

The tokenizer is a real one (tests/tiny_models); the inference engine is the one stand-in: its ``agenerate`` answers
each request with a completion the test chose, as token ids.

What is installed, at test time, with ``pip install --no-deps --target`` under ``.venv/trainer-packages/`` (kept for
the next run): the areal wheel (1.1 MB) and the modules its workflow imports that ``.venv`` lacks: ray 2.60.0 with
msgpack (shared with the verl and NeMo Gym tests), hydra-core 1.4.0.dev1 and omegaconf 2.4.0.dev2 (AReaL's pins),
flask with werkzeug, blinker and itsdangerous, torchdata, colorlog, tenacity, orjson, aiofiles. Not installed: its
full dependency set (171 packages, with a CUDA torch < 2.11 and transformers <= 5.3; its ``cuda``/``sglang`` extras
on top); ``.venv``'s CPU torch 2.13 and transformers serve this path. About 17 s with the installs, 9 s without.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from trainer_packages import RAY, REWARDS, boom_server, trainer_package

from reward.v1 import reward_pb2 as pb

VERSION = "1.0.4"
REQUIREMENTS = [f"areal=={VERSION}", "hydra-core==1.4.0.dev1", "omegaconf==2.4.0.dev2", "flask==3.1.3"]
REQUIREMENTS += ["werkzeug==3.1.9", "blinker==1.9.0", "itsdangerous==2.2.0", "torchdata==0.11.0", "colorlog==6.12.0"]
REQUIREMENTS += ["tenacity==9.2.1", "orjson==3.13.0", "aiofiles==25.1.0"]
COMPLETIONS = [
    "<reasoning>\n6 x 7\n</reasoning>\n<answer>\n42\n</answer>\n",
    "<answer>\n41\n</answer>",
    "It is 42.",
    "<answer>\n42\n</answer> trailing",
]
BOOM = "<answer>\n42\n</answer> BOOM"
#: Runs in its own interpreter, with the packages' folders first on PYTHONPATH.
DRIVER = r'''
import asyncio, json, logging, sys

sys.path.insert(0, "tests")
from tiny_models import build_tiny_tokenizer

from areal.api import ModelResponse
from areal.api.cli_args import GenerationHyperparameters
from areal.infra import workflow_context
from areal.infra.remote_inf_engine import GroupedRolloutWorkflow
from areal.infra.workflow_context import WorkflowContext
from areal.workflow.rlvr import RLVRWorkflow

tokenizer_dir, completions, boom = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
tokenizer = build_tiny_tokenizer(tokenizer_dir)


class Engine:
    """Stands in for SGLang/vLLM: each prompt's rollouts get the chosen completions in turn (BOOM for prompt 3)."""

    def __init__(self):
        self.served = {}

    async def agenerate(self, req):
        prompt = tokenizer.decode(req.input_ids)
        k = self.served[prompt] = self.served.get(prompt, -1) + 1
        text = boom if "#3" in prompt else completions[k % len(completions)]
        ids = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        return ModelResponse(input_tokens=list(req.input_ids), output_tokens=ids, output_logprobs=[0.0] * len(ids),
                             output_versions=[0] * len(ids), tokenizer=tokenizer)


workflow = GroupedRolloutWorkflow(
    RLVRWorkflow("trainer_client.integrations.areal.reward_fn", GenerationHyperparameters(max_new_tokens=64),
                 tokenizer),
    group_size=4, logger=logging.getLogger("test"),
)
engine = Engine()


async def episode(i):
    workflow_context.set(WorkflowContext(is_eval=False, task_id=i))
    data = {"messages": [{"role": "user", "content": f"What is 6 x 7? #{i}"}], "answer": "42", "level": i}
    try:
        result = await workflow.arun_episode(engine, data)
    except Exception as exc:  # WorkflowExecutor rejects the rollout
        return {"error": type(exc).__name__, "message": str(exc)}
    samples = []
    for ids, mask, reward in zip(result["input_ids"].tolist(), result["loss_mask"].tolist(),
                                 result["rewards"].tolist()):
        prompt_ids = [t for t, m in zip(ids, mask) if m == 0 and t != tokenizer.pad_token_id]
        output_ids = [t for t, m in zip(ids, mask) if m == 1]
        samples.append({"prompt": tokenizer.decode(prompt_ids), "completion": tokenizer.decode(output_ids),
                        "reward": reward})
    return {"samples": samples}


async def main():
    return await asyncio.gather(*(episode(i) for i in range(4)))


print(json.dumps(asyncio.run(main())))
'''


@pytest.fixture(scope="module")
def packages() -> list[Path]:
    return [trainer_package(f"areal-{VERSION}", REQUIREMENTS), trainer_package("ray-2.60.0", RAY)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with boom_server(tmp_path_factory.mktemp("areal"), "--workers", "1") as running:
        yield running


def grpc_totals(server, samples: list[dict]) -> list[float]:
    """The same samples (AReaL's prompt string, the completion without its end-of-turn token) through gRPC."""
    request = pb.ScoreRequest(
        samples=[
            pb.Sample(prompt_text=s["prompt"], completion=s["completion"].removesuffix("<|im_end|>"),
                      fields={"answer": "42"})
            for s in samples
        ],
        rewards=[pb.RewardSpec(name=r["name"], weight=r.get("weight", 1.0)) for r in REWARDS],
    )  # fmt: skip
    response = server.stub().Score(request, timeout=60)
    assert not any(note.kind == pb.NOTE_KIND_REWARD_ERROR for r in response.results for note in r.notes)
    return [0.0 if math.isnan(t) else t for t in response.total]


def test_areal_rlvr_workflow_gets_the_grpc_totals_and_rejects_a_failed_group(packages, server, tmp_path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*map(str, packages), str(REPO)]),
        "REWARD_SERVICE_TARGET": server.address,
        "REWARD_SERVICE_REWARDS": json.dumps(REWARDS),
    }
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path / "tokenizer"), json.dumps(COMPLETIONS), BOOM],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    episodes = json.loads(result.stdout.splitlines()[-1])

    scored = [s for e in episodes[:3] for s in e["samples"]]
    assert len(scored) == 12 and all(s["completion"].endswith("<|im_end|>") for s in scored)
    assert {s["completion"].removesuffix("<|im_end|>") for s in scored} == set(COMPLETIONS)
    assert [s["prompt"].endswith("<|im_start|>assistant\n") for s in scored] == [True] * 12
    # torch.tensor(reward, dtype=float32) in the episode: the gRPC totals to float32 precision.
    assert [s["reward"] for s in scored] == pytest.approx(grpc_totals(server, scored), rel=1e-6)

    # The group whose rollouts failed: RewardFailed out of AReaL's retries, the whole group rejected.
    assert episodes[3]["error"] == "RewardFailed"
    assert "boom: reward_error" in episodes[3]["message"] and "boom in the reward" in episodes[3]["message"]
