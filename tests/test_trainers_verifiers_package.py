"""verifiers' own code drives ``trainer_client.integrations.verifiers.RemoteGroupReward``, compared with gRPC ``Score``
of the same samples: the released verifiers 0.1.14 wheel (the version the adapter follows; 0.3.1 keeps its Rubric as
``verifiers.legacy`` but imports the ``renderers`` package there, 0.4.0 has none) runs ``SingleTurnEnv.evaluate``
-> ``generate`` -> ``run_group`` -> ``Rubric.score_group``, 3 prompts x 4 rollouts, with
``vf.Rubric(funcs=[RemoteGroupReward(...)])``:

- its ``OpenAIChatCompletionsClient`` over a real ``AsyncOpenAI``; the policy is the one stand-in, an
  ``httpx.MockTransport`` that answers each chat completion with a completion the test chose;
- its ``State``, its pydantic messages (``SystemMessage``/``UserMessage``/``AssistantMessage``, which the adapter reads
  as ``m["role"]``/``m["content"]``), its ``group_score_objects`` and its ``state_to_output``. The adapter's record
  ``state["reward_service"]`` reaches verifiers' outputs when asked for with ``state_columns=["reward_service"]``
  (without it, the top-level key of that name is the flattened metric of the same name; ``metrics`` has it too).

What is installed, at test time and only into ``.venv/trainer-packages/verifiers-0.1.14`` (``pip install --no-deps
--target``, about 1 MB; kept for the next run): the wheel, ``tenacity`` and ``msgpack``, the only two of
its dependencies this path imports that ``.venv`` lacks. Its full install (``pip install verifiers==0.1.14``) would
downgrade ``.venv``'s datasets, huggingface_hub and regex, so it is not done. One module trick: ``verifiers/envs/
__init__.py`` imports ``envs.experimental`` (sandbox mixins: prime-sandboxes, connectrpc, the Rust pyqwest), which no
single-turn environment uses, so ``verifiers.envs`` is registered without its ``__init__`` and its modules import as
they are. About 5 s a run, 5 s more for the first install.
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
from trainer_packages import REWARDS, boom_server, trainer_package

from reward.v1 import reward_pb2 as pb

VERSION = "0.1.14"
REQUIREMENTS = [f"verifiers=={VERSION}", "tenacity==9.2.1", "msgpack==1.2.4"]
COMPLETIONS = [
    "<reasoning>\n6 x 7\n</reasoning>\n<answer>\n42\n</answer>\n",
    "<answer>\n41\n</answer>",
    "It is 42.",
    "<answer>\n42\n</answer> BOOM",
]
#: Runs in its own interpreter, with the package's folder first on PYTHONPATH.
DRIVER = r'''
import asyncio, json, sys, types
from pathlib import Path

import verifiers

envs = types.ModuleType("verifiers.envs")  # without envs/__init__.py (sandbox mixins: prime-sandboxes, pyqwest)
envs.__path__ = [str(Path(verifiers.__file__).parent / "envs")]
sys.modules["verifiers.envs"] = envs

import httpx
from datasets import Dataset
from openai import AsyncOpenAI
from verifiers.clients import OpenAIChatCompletionsClient
from verifiers.envs.singleturn_env import SingleTurnEnv

from trainer_client.integrations.verifiers import RemoteGroupReward

target, rewards, completions = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
served = {}


def policy(request: httpx.Request) -> httpx.Response:
    """The policy's chat completions endpoint: each prompt's rollouts get the chosen completions in turn."""
    body = json.loads(request.content)
    question = body["messages"][-1]["content"]
    k = served[question] = served.get(question, -1) + 1
    text = completions[(int(question.split("#")[1]) + k) % len(completions)]
    return httpx.Response(200, json={
        "id": f"c{len(served)}-{k}", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    })


openai = AsyncOpenAI(base_url="http://policy.invalid/v1", api_key="none",
                     http_client=httpx.AsyncClient(transport=httpx.MockTransport(policy)))
reward = RemoteGroupReward(target=target, rewards=rewards, failure_score=-1.0)
dataset = Dataset.from_list([{"question": f"What is 6 x 7? #{i}", "answer": "42"} for i in range(3)])
env = SingleTurnEnv(dataset=dataset, system_prompt="Answer in XML.", rubric=verifiers.Rubric(funcs=[reward]))
result = asyncio.run(env.evaluate(OpenAIChatCompletionsClient(openai), "policy", num_examples=3,
                                  rollouts_per_example=4, state_columns=["reward_service"],
                                  on_progress=lambda *a, **k: None))


def plain(messages):
    return [{"role": m["role"], "content": m["content"]} for m in messages]


print(json.dumps([
    {"example_id": o["example_id"], "prompt": plain(o["prompt"]), "completion": plain(o["completion"]),
     "answer": o["answer"], "reward": o["reward"], "metrics": o["metrics"], "reward_service": o["reward_service"]}
    for o in result["outputs"]
]))
'''


@pytest.fixture(scope="module")
def package() -> Path:
    return trainer_package(f"verifiers-{VERSION}", REQUIREMENTS)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with boom_server(tmp_path_factory.mktemp("verifiers"), "--workers", "1") as running:
        yield running


def grpc_score(server, outputs: list[dict]) -> tuple[list[float], list[bool]]:
    """The same samples (the chat prompt, the assistant's text, the answer) through a bare gRPC stub."""
    samples = []
    for o in outputs:
        sample = pb.Sample(completion="".join(m["content"] for m in o["completion"]), fields={"answer": o["answer"]})
        sample.prompt.extend(pb.ChatMessage(role=m["role"], content=m["content"]) for m in o["prompt"])
        samples.append(sample)
    specs = [pb.RewardSpec(name=r["name"], weight=r.get("weight", 1.0)) for r in REWARDS]
    response = server.stub().Score(pb.ScoreRequest(samples=samples, rewards=specs), timeout=60)
    failed = [False] * len(samples)
    for result in response.results:
        for note in result.notes:
            failed[note.sample_index] |= note.kind == pb.NOTE_KIND_REWARD_ERROR
    return list(response.total), failed


def test_verifiers_single_turn_env_scores_with_the_grpc_totals(package, server) -> None:
    before = server.score_calls()
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, server.address, json.dumps(REWARDS), json.dumps(COMPLETIONS)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(package), str(REPO)])},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = json.loads(result.stdout.splitlines()[-1])
    calls = server.score_calls() - before

    assert len(outputs) == 12 and sorted({o["example_id"] for o in outputs}) == [0, 1, 2]
    assert [m["role"] for m in outputs[0]["prompt"]] == ["system", "user"]
    texts = {m["content"] for o in outputs for m in o["completion"]}
    assert texts == set(COMPLETIONS)  # every case, the failing one among them, went through
    totals, failed = grpc_score(server, outputs)
    expected = [-1.0 if f else (0.0 if math.isnan(t) else t) for t, f in zip(totals, failed, strict=True)]
    assert [o["reward"] for o in outputs] == pytest.approx(expected)
    assert [o["metrics"]["reward_service"] for o in outputs] == pytest.approx(expected)
    assert [o["reward_service"]["failed"] for o in outputs] == failed and any(failed)
    for o, bad in zip(outputs, failed, strict=True):
        if bad:
            assert o["reward_service"]["failures"]["boom"]["kind"] == "reward_error"
    # Rubric.score_group calls the group function once per group; the adapter coalesces what arrives together.
    assert 1 <= calls <= 3, calls
