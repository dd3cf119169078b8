"""OpenRLHF's own reward code against both of this project's OpenRLHF forms, compared with gRPC ``Score`` of the same
samples: the released openrlhf 0.11.2 wheel's ``SingleTurnAgentExecutor.execute`` (generation, then ``query =
tokenizer.decode(prompt + response tokens, skip_special_tokens=False)``, then the reward, then
``output.update(reward=..., scores=..., extra_logs=...)``), 64 samples at once as its rollout does:

- ``--reward.remote_url http://.../openrlhf/<profile>``: ``_fetch_rewards_via_http`` posts to the HTTP route;
- ``--reward.remote_url /path/to/trainer_client/integrations/openrlhf.py``: the executor's ``__init__`` loads the
  file with ``importlib.util.spec_from_file_location`` and takes its ``reward_func``; ``_fetch_rewards_via_func``
  calls it once per sample through ``asyncio.to_thread`` (the adapter coalesces those threads' calls into Score
  calls over gRPC, configured from ``REWARD_SERVICE_*`` in the environment).

openrlhf's dependencies (deepspeed, flash-attn built against CUDA, Ray) do not install on CI's machine, and none of
them is on this path: the wheel alone is fetched (``pip download --no-deps``, 0.2 MB, under a second) and
``openrlhf/utils/agent.py`` imported as it is, without the package ``__init__`` files (they import the training
stack). The tokenizer is a real one (tests/tiny_models, ChatML with ``<|im_end|>``). The vLLM engine is the one
fake: it returns the completion the test chose, so the expected rewards are known.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, start_server, stop_server

from reward.v1 import reward_pb2 as pb

OPENRLHF = "openrlhf==0.11.2"
WHEELS = REPO / ".venv" / "trainer-wheels"
CONFIG = """
http_port: 0
workers: 1
profiles:
  gsm8k:
    rewards: [{name: xml_correctness}, {name: xml_tag_count, weight: 0.5}]
    label_field: answer
"""
#: Runs in its own interpreter: the module trick below must not leak into pytest's.
DRIVER = r'''
import asyncio, json, sys, types, zipfile
from types import SimpleNamespace

sys.path.insert(0, "tests")
from tiny_models import CHAT_TEMPLATE, build_tiny_tokenizer

wheel, root, url, tokenizer_dir = sys.argv[1:5]
cases = json.loads(sys.stdin.read())
zipfile.ZipFile(wheel).extractall(root)
package = f"{root}/openrlhf-0.11.2.data/purelib/openrlhf"
for name, path in (("openrlhf", package), ("openrlhf.utils", package + "/utils")):
    module = types.ModuleType(name)
    module.__path__ = [path]  # the package's modules, without its __init__ (torch, deepspeed, Ray)
    sys.modules[name] = module
from openrlhf.utils.agent import SingleTurnAgentExecutor

tokenizer = build_tiny_tokenizer(tokenizer_dir)


class FakeEngine:
    """Stands in for vLLM: answers each prompt with the completion chosen for it, ending in EOS."""

    def __init__(self, completions):
        self.completions = completions

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        prompt = tokenizer.decode(prompt_token_ids, skip_special_tokens=False)
        text = self.completions[prompt]
        ids = tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
        output = SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])


async def main():
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": c["question"]}], tokenize=False,
                                      add_generation_prompt=True, chat_template=CHAT_TEMPLATE)
        for c in cases
    ]
    engine = FakeEngine({p: c["completion"] for p, c in zip(prompts, cases)})
    executor = SingleTurnAgentExecutor(url)
    params = SimpleNamespace(max_tokens=256, logprobs=None)
    outputs = await asyncio.gather(*(
        executor.execute(p, c["label"], params, 1024, tokenizer, engine) for p, c in zip(prompts, cases)
    ))
    def plain(value):  # the file form's answers are tensors; the HTTP form's are lists
        return value.tolist() if hasattr(value, "tolist") else value

    print(json.dumps([
        {"reward": plain(o["reward"]), "scores": plain(o["scores"]), "prompt": o["prompt"],
         "extra_logs": {k: plain(v) for k, v in o["extra_logs"].items()}}
        for o in outputs
    ]))

asyncio.run(main())
'''
COMPLETIONS = [
    "<reasoning>\n6 x 7\n</reasoning>\n<answer>\n42\n</answer>\n",
    "<answer>\n41\n</answer>",
    "It is 42.",
    "<reasoning>\nx\n</reasoning>\n<answer>\n42\n</answer>\n trailing",
]


@pytest.fixture(scope="module")
def openrlhf_wheel():
    WHEELS.mkdir(parents=True, exist_ok=True)
    found = sorted(WHEELS.glob("openrlhf-0.11.2-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", OPENRLHF, "-d", str(WHEELS)],
            check=True,
            timeout=120,
        )
        found = sorted(WHEELS.glob("openrlhf-0.11.2-*.whl"))
    return found[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("openrlhf"), config=CONFIG)
    running.http = re.search(r"HTTP/JSON on (\S+)", running.log()).group(1)
    yield running
    stop_server(running)


def _drive(openrlhf_wheel, tmp_path, remote_url: str, env: dict | None = None) -> tuple[list[dict], list[dict]]:
    """64 samples through the wheel's SingleTurnAgentExecutor with ``remote_url``: the cases and its outputs."""
    cases = [
        {"question": f"What is 6 x 7? ({i})", "completion": COMPLETIONS[i % 4] + " " * (i // 4), "label": "42"}
        for i in range(64)
    ]
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(openrlhf_wheel), str(tmp_path / "wheel"), remote_url,
         str(tmp_path / "tokenizer")],
        input=json.dumps(cases), capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return cases, json.loads(result.stdout.splitlines()[-1])


def _grpc_totals(server, cases: list[dict], outputs: list[dict]) -> list[float]:
    samples = [
        pb.Sample(completion=c["completion"], prompt_text=o["prompt"], fields={"answer": "42"})
        for c, o in zip(cases, outputs, strict=True)
    ]
    specs = [pb.RewardSpec(name="xml_correctness"), pb.RewardSpec(name="xml_tag_count", weight=0.5)]
    return list(server.stub().Score(pb.ScoreRequest(samples=samples, rewards=specs), timeout=60).total)


def test_openrlhf_single_turn_executor_gets_the_grpc_totals(openrlhf_wheel, server, tmp_path) -> None:
    cases, outputs = _drive(openrlhf_wheel, tmp_path, f"{server.http}/openrlhf/gsm8k")
    totals = _grpc_totals(server, cases, outputs)
    # OpenRLHF keeps the answer's lists of one as they come: reward [total], scores [total], extra_logs per key.
    assert [o["reward"] for o in outputs] == [[t] for t in totals]
    assert [o["scores"] for o in outputs] == [[t] for t in totals]
    assert all(o["extra_logs"]["reward_failed"] == [0.0] for o in outputs)
    assert {o["extra_logs"]["xml_correctness"][0] for o in outputs} == {0.0, 2.0}


def test_openrlhf_loads_and_calls_the_reward_func_file(openrlhf_wheel, server, tmp_path) -> None:
    """The file form: OpenRLHF's own loader and threads call ``trainer_client/integrations/openrlhf.py``'s
    ``reward_func``, which scores over gRPC; the numbers are the gRPC totals (float32, as the file returns tensors),
    and the adapter's coalescing turns 64 threaded one-sample calls into far fewer Score calls."""
    import trainer_client.integrations.openrlhf as adapter

    before = server.score_calls()
    env = {
        "REWARD_SERVICE_TARGET": server.address,
        "REWARD_SERVICE_REWARDS": json.dumps([{"name": "xml_correctness"}, {"name": "xml_tag_count", "weight": 0.5}]),
        "REWARD_SERVICE_LABEL_FIELD": "answer",
        "REWARD_SERVICE_WINDOW_S": "0.2",
    }
    cases, outputs = _drive(openrlhf_wheel, tmp_path, adapter.__file__, env)
    calls = server.score_calls() - before
    totals = _grpc_totals(server, cases, outputs)
    assert [o["reward"][0] for o in outputs] == pytest.approx(totals, rel=1e-6)
    assert [o["scores"][0] for o in outputs] == pytest.approx(totals, rel=1e-6)
    assert all(o["extra_logs"]["reward_failed"] == [0.0] for o in outputs)
    assert {o["extra_logs"]["xml_correctness"][0] for o in outputs} == {0.0, 2.0}
    assert 1 <= calls < 64, calls
