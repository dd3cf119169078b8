"""NeMo Gym's own code against this project's Gym routes, compared with gRPC ``Score`` of the same samples: the released
nemo-gym 0.7.0 wheel (the newest; it declares Python >= 3.13.14, so it is installed with ``--ignore-requires-python``
and its code runs on 3.11 as it is), two ways:

- **the README's resources server, launched as Gym launches one:** the README's ``app.py`` (read from README.md) in
  ``resources_servers/reward_service/``, started as ``python app.py`` with ``NEMO_GYM_CONFIG_DICT`` (the global config
  that Gym's own ``GlobalConfigDictParser`` makes of the README's YAML entry) and ``NEMO_GYM_CONFIG_PATH``, the two
  variables ``gym env start`` gives each server process. ``SimpleResourcesServer.run_webserver`` serves it (its
  session middleware, ``judge_failsafe``, its ``/seed_session`` and ``/verify`` routes); it forwards to
  ``/gym/<profile>/verify``;
- **Gym's agent posting to the reward server directly** (``gym_root: true``): the same requests sent to the root
  routes.

Either way the requests are those of Gym's ``SimpleAgent.run``, sent with Gym's ``ServerClient`` (aiohttp, by server
name from the global config): ``/seed_session`` with ``SimpleAgentRunRequest(row).model_dump()``, then ``/verify``
with ``body.model_dump() | {"response": <the model server's Responses-API JSON>}`` and the session cookies, Gym's
``raise_for_status``; the answer is validated with ``SimpleAgentVerifyResponse``. The policy's answers are
``NeMoGymResponse`` objects the test builds with the completions it chose; no model server runs.

What is installed, at test time, with ``pip install --no-deps --target`` under ``.venv/trainer-packages/`` (kept for
the next run): the nemo-gym wheel (43 MB) and, in a folder of their own (``import nemo_gym`` moves its install folder
to the end of ``sys.path``), the modules ``nemo_gym.server_utils`` imports that ``.venv`` lacks: ray 2.60.0 with
msgpack (shared with the verl and AReaL tests; ``nemo_gym.server_utils`` imports it, though the README's server sets
``ray_enabled = False``), hydra-core 1.4.0.dev1 (1.3's grammar does not load with ``.venv``'s antlr4 4.13),
omegaconf, wandb,
platformdirs, yappi, gprof2dot, pydot, orjson, itsdangerous, and openai 2.44.0 with distro (Gym pins it and its
config parser refuses another; it shadows ``.venv``'s openai 3 in the test's processes only). Not installed: Gym's
full dependency set (ray[default], mlflow and the rest of its pins; its launcher builds a uv venv per server) and
NeMo RL (not on PyPI: ``nemo-rl`` there is an empty 0.0.0), so NeMo RL's side (``should_mask_flagged_samples``) is
not run. About 25 s a run, 15 s more for the first installs.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from trainer_packages import RAY, boom_server, trainer_package

from reward.v1 import reward_pb2 as pb

VERSION = "0.7.0"
#: Apart from the wheel: ``import nemo_gym`` moves its own install folder to the end of ``sys.path``.
REQUIREMENTS = ["hydra-core==1.4.0.dev1", "omegaconf==2.4.0", "orjson==3.13.0"]
REQUIREMENTS += ["itsdangerous==2.2.0", "wandb==0.31.0", "platformdirs==4.14.9", "yappi==1.7.6"]
REQUIREMENTS += ["gprof2dot==2025.4.14", "pydot==4.0.1", "openai==2.44.0", "distro==1.9.0"]


def readme_config() -> str:
    """The README's Gym profile (label_field + gym_label_key), with a failing reward added and served at the root."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    config = yaml.safe_load(next(b for b in blocks if "gym_label_key:" in b))
    profile = config["profiles"]["gsm8k"]
    profile["rewards"] = [*profile["rewards"], {"name": "boom"}]
    profile["gym_root"] = True
    return yaml.safe_dump({**config, "http_port": 0, "workers": 1})


SPECS = [pb.RewardSpec(name="xml_correctness"), pb.RewardSpec(name="xml_tag_count", weight=0.5)]
SPECS += [pb.RewardSpec(name="boom")]
COMPLETIONS = [
    "<reasoning>\n6 x 7\n</reasoning>\n<answer>\n42\n</answer>\n",
    "<answer>\n41\n</answer>",
    "It is 42.",
    "<answer>\n42\n</answer> BOOM",
]
#: Runs in its own interpreter, with the packages' folders first on PYTHONPATH.
DRIVER = r'''
import asyncio, json, os, re, socket, subprocess, sys, time
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from nemo_gym.config_types import BaseServerConfig
from nemo_gym.global_config import GlobalConfigDictParser, GlobalConfigDictParserConfig
from nemo_gym.openai_utils import NeMoGymResponse
from nemo_gym.server_utils import ServerClient, get_response_json, raise_for_status
from responses_api_agents.simple_agent.app import SimpleAgentRunRequest, SimpleAgentVerifyResponse

http, root, completions = json.loads(sys.stdin.read())
root = Path(root)
sys.argv[1:] = []  # Gym's config parser reads the command line as Hydra overrides
host, port = re.fullmatch(r"http://([^:]+):(\d+)", http).groups()
readme = Path("README.md").read_text()
app = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "class RewardServiceResourcesServer" in b)
entry = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "resources_servers:" in b)
server_dir = root / "resources_servers" / "reward_service"
server_dir.mkdir(parents=True)
(server_dir / "app.py").write_text(app)

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    app_port = s.getsockname()[1]
config = {"reward_service": yaml.safe_load(entry)["reward_service"]}
config["reward_service"]["resources_servers"]["reward_service"].update(
    host="127.0.0.1", port=app_port, reward_url=f"{http}/gym/gsm8k/verify")
config["reward_direct"] = {"resources_servers": {"reward_direct": {
    "entrypoint": "app.py", "domain": "math", "host": host, "port": int(port)}}}
global_config = GlobalConfigDictParser().parse(GlobalConfigDictParserConfig(
    initial_global_config_dict=OmegaConf.create(config), skip_load_from_cli=True, skip_load_from_dotenv=True))
# What ``gym env start`` gives every server process it launches; the agent's side (this process) reads it too.
os.environ["NEMO_GYM_CONFIG_DICT"] = OmegaConf.to_yaml(global_config)
env = {**os.environ, "NEMO_GYM_CONFIG_PATH": "reward_service"}
process = subprocess.Popen([sys.executable, "app.py"], cwd=server_dir, env=env, stdout=sys.stderr, stderr=sys.stderr)
client = ServerClient(head_server_config=BaseServerConfig.model_validate(global_config["head_server"]),
                      global_config_dict=global_config)


def model_response(i, text):
    """What Gym's model server answers (Responses API), as the agent holds it: JSON."""
    return NeMoGymResponse.model_validate({
        "id": f"resp_{i}", "created_at": 0, "model": "policy", "object": "response", "output": [
            {"id": f"msg_{i}", "type": "message", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
    }).model_dump(mode="json")


async def rollout(server_name, i):
    """SimpleAgent.run's calls to its resources server: seed the session, then verify with its cookies."""
    row = {"responses_create_params": {"input": [{"role": "user", "content": f"What is 6 x 7? #{i}"}]},
           "expected_answer": "42", "level": i}
    body = SimpleAgentRunRequest.model_validate(row)
    seeded = await client.post(server_name=server_name, url_path="/seed_session", json=body.model_dump())
    await raise_for_status(seeded)
    payload = body.model_dump() | {"response": model_response(i, completions[i % len(completions)])}
    verified = await client.post(server_name=server_name, url_path="/verify", json=payload, cookies=seeded.cookies)
    await raise_for_status(verified)
    result = SimpleAgentVerifyResponse.model_validate(await get_response_json(verified))
    return result.model_dump(mode="json") | {"gym_mask_sample": result.mask_sample}


async def main():
    out = {}
    for name in ("reward_service", "reward_direct"):
        out[name] = await asyncio.gather(*(rollout(name, i) for i in range(8)))
    return out


try:
    deadline = time.monotonic() + 120
    while client.poll_for_status("reward_service") != "success":
        assert process.poll() is None and time.monotonic() < deadline, "the README's app.py did not start"
        time.sleep(0.2)
    print(json.dumps(asyncio.run(main())))
finally:
    process.terminate()
    process.wait(60)
'''


@pytest.fixture(scope="module")
def packages() -> list[Path]:
    return [
        trainer_package(f"nemo-gym-{VERSION}-deps", REQUIREMENTS),
        trainer_package("ray-2.60.0", RAY),
        trainer_package(f"nemo-gym-{VERSION}", [f"nemo-gym=={VERSION}"], "--ignore-requires-python"),
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with boom_server(tmp_path_factory.mktemp("gym"), config=readme_config()) as running:
        running.http = running.log().split("HTTP/JSON on ")[1].split()[0]
        yield running


@pytest.fixture(scope="module")
def answers(packages, server, tmp_path_factory) -> dict[str, list[dict]]:
    """Gym's answers, per way (``reward_service``: the README's app.py; ``reward_direct``: the root routes)."""
    root = tmp_path_factory.mktemp("gym-root")
    ray_tmp = Path("/tmp") / f"ray-gym-{os.getpid()}"  # Ray's socket paths must stay short
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*map(str, packages), str(REPO)]),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TMPDIR": str(ray_tmp),
        "WANDB_MODE": "disabled",
    }
    try:
        result = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", DRIVER], input=json.dumps([server.http, str(root), COMPLETIONS]),
            capture_output=True, text=True, cwd=REPO, timeout=400, env=env,
        )  # fmt: skip
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.splitlines()[-1])


def grpc_score(server, completions: list[str]) -> tuple[list[float], list[list[float]], list[bool]]:
    samples = []
    for i, completion in enumerate(completions):
        sample = pb.Sample(completion=completion, fields={"answer": "42", "expected_answer": "42"})
        sample.typed_fields["level"].number_value = i
        sample.prompt.append(pb.ChatMessage(role="user", content=f"What is 6 x 7? #{i}"))
        samples.append(sample)
    response = server.stub().Score(pb.ScoreRequest(samples=samples, rewards=SPECS), timeout=60)
    failed = [False] * len(samples)
    for result in response.results:
        for note in result.notes:
            failed[note.sample_index] |= note.kind == pb.NOTE_KIND_REWARD_ERROR
    components = [[r.weight * r.scores[i] for r in response.results] for i in range(len(samples))]
    return list(response.total), components, failed


@pytest.mark.parametrize("way", ["reward_service", "reward_direct"])
def test_gym_simple_agent_calls_get_the_grpc_totals(answers, server, way) -> None:
    got = answers[way]
    completions = [COMPLETIONS[i % len(COMPLETIONS)] for i in range(8)]
    assert [a["response"]["output"][0]["content"][0]["text"] for a in got] == completions
    totals, components, failed = grpc_score(server, completions)
    assert any(failed)
    for answer, total, parts, bad in zip(got, totals, components, failed, strict=True):
        assert answer["reward_failed"] is bad
        assert answer["expected_answer"] == "42" and answer["level"] == got.index(answer)  # the row's keys echoed
        names = ["xml_correctness", "xml_tag_count", "boom"]
        want = {n: 0.0 if math.isnan(p) else p for n, p in zip(names, parts, strict=True) if not (bad and n == "boom")}
        assert {n: v for n, v in answer["reward_components"].items() if n in want} == pytest.approx(want)
        if bad:  # on_failure: mask (the default): failure_value 0.0, flagged, masked, the reason given
            assert answer["reward"] == 0.0 and answer["instance_config"]["mask_sample"] is True
            assert "boom in the reward" in answer["reward_failure"]
        else:
            assert answer["reward"] == pytest.approx(total) and answer["instance_config"]["mask_sample"] is False


def test_gym_070_sees_a_failed_sample_as_masked(answers) -> None:
    """nemo-gym 0.7.0 reads the mask at the top level of BaseVerifyResponse, and the failure's kind and reason."""
    for answer in answers["reward_service"] + answers["reward_direct"]:
        assert answer["gym_mask_sample"] is answer["reward_failed"]
        if answer["reward_failed"]:
            assert answer["failure_kind"] == "reward_service:reward_error"
            assert "boom in the reward" in answer["failure_reason"]
