"""OpenRLHF's own reward client against ``/openrlhf/<profile>``: the released openrlhf 0.11.2 wheel's
``SingleTurnAgentExecutor.execute`` (generation, then ``query = tokenizer.decode(prompt + response tokens,
skip_special_tokens=False)``, then ``_fetch_rewards_via_http``, then ``output.update(reward=..., scores=...,
extra_logs=...)``), 64 samples at once as its rollout does, compared with gRPC ``Score`` of the same samples.

openrlhf's dependencies (deepspeed, flash-attn built against CUDA, Ray) do not install on CI's machine, and none of
them is on this path: the wheel alone is fetched (``pip download --no-deps``, 0.2 MB, under a second) and
``openrlhf/utils/agent.py`` imported as it is, without the package ``__init__`` files (they import the training
stack). The tokenizer is a real one (tests/tiny_models, ChatML with ``<|im_end|>``). The vLLM engine is the one
fake: it returns the completion the test chose, so the expected rewards are known.
"""

from __future__ import annotations

import json
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
    print(json.dumps([
        {"reward": o["reward"], "scores": o["scores"], "extra_logs": o["extra_logs"], "prompt": o["prompt"]}
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


def test_openrlhf_single_turn_executor_gets_the_grpc_totals(openrlhf_wheel, server, tmp_path) -> None:
    cases = [
        {"question": f"What is 6 x 7? ({i})", "completion": COMPLETIONS[i % 4] + " " * (i // 4), "label": "42"}
        for i in range(64)
    ]
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(openrlhf_wheel), str(tmp_path / "wheel"), f"{server.http}/openrlhf/gsm8k",
         str(tmp_path / "tokenizer")],
        input=json.dumps(cases), capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.splitlines()[-1])
    samples = [
        pb.Sample(completion=c["completion"], prompt_text=o["prompt"], fields={"answer": "42"})
        for c, o in zip(cases, outputs, strict=True)
    ]
    specs = [pb.RewardSpec(name="xml_correctness"), pb.RewardSpec(name="xml_tag_count", weight=0.5)]
    totals = list(server.stub().Score(pb.ScoreRequest(samples=samples, rewards=specs), timeout=60).total)
    # OpenRLHF keeps the answer's lists of one as they come: reward [total], scores [total], extra_logs per key.
    assert [o["reward"] for o in outputs] == [[t] for t in totals]
    assert [o["scores"] for o in outputs] == [[t] for t in totals]
    assert all(o["extra_logs"]["reward_failed"] == [0.0] for o in outputs)
    assert {o["extra_logs"]["xml_correctness"][0] for o in outputs} == {0.0, 2.0}
