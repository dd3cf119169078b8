"""The HTTP transport's auth, team limits, start-up checks and drain (issue 17), on real server processes.

Auth: the same bearer tokens as gRPC (``Authorization: Bearer ...``), 401 without one, health open. Profiles:
checked before anything loads (config validation, then with the plugins' rewards), one line per problem and exit 2.
Shutdown: an HTTP call in flight finishes (the same drain as gRPC's).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from conftest import REPO, start_server, stop_server
from test_security import TOKENS, write_auth

from reward_server.config import ConfigError

CONFIG = """
http_port: 0
workers: 1
profiles:
  gsm8k:
    rewards: [{name: xml_correctness}]
"""
SLOW = """import time


def slow_reward(completions, **kwargs):
    time.sleep(2)
    return [1.0] * len(completions)
"""
BODY = {"query": ["<answer>\n7\n</answer>"], "prompts": [""], "labels": ["7"]}


@pytest.fixture(scope="module")
def auth_http(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http-auth")
    auth = write_auth(tmp / "auth.yaml", partner={"max_samples_per_second": 1})
    server = start_server(tmp, "--auth-file", str(auth), config=CONFIG)
    server.http = re.search(r"HTTP/JSON on (\S+)", server.log()).group(1)
    yield server
    stop_server(server)


def test_every_route_needs_a_token_but_health_stays_open(auth_http) -> None:
    base = auth_http.http
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKENS["research"]}):
        for path, body in (("/openrlhf/gsm8k", BODY), ("/reward.v1.RewardService/ListRewards", {})):
            reply = httpx.post(base + path, json=body, headers=headers)
            assert reply.status_code == 401, (path, headers, reply.text)
            assert reply.json()["code"] == "unauthenticated"
        assert httpx.get(base + "/profiles", headers=headers).status_code == 401
    assert httpx.get(base + "/healthz").json() == {"status": "SERVING"}
    ok = httpx.post(base + "/openrlhf/gsm8k", json=BODY, headers={"Authorization": f"Bearer {TOKENS['research']}"})
    assert ok.status_code == 200 and ok.json()["rewards"] == [2.0]
    assert "team=research" in auth_http.log()


def test_a_team_over_its_limit_gets_429_with_retry_after(auth_http) -> None:
    headers = {"Authorization": f"Bearer {TOKENS['partner']}"}
    batch = {"query": ["a", "b", "c"], "labels": ["1", "2", "3"]}
    replies = [httpx.post(auth_http.http + "/openrlhf/gsm8k", json=batch, headers=headers) for _ in range(3)]
    refused = [r for r in replies if r.status_code == 429]
    assert refused, [r.status_code for r in replies]
    assert "samples/s" in refused[0].json()["message"] and int(refused[0].headers["retry-after"]) >= 1


def _start_expecting_exit(tmp_path, config: str) -> subprocess.CompletedProcess:
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "reward_server", "--port", "0", "--workers", "0", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_profiles_refuse_the_start_with_one_line_per_problem(tmp_path) -> None:
    result = _start_expecting_exit(
        tmp_path,
        """
http_port: 0
profiles:
  p:
    rewards: [{name: no_such_reward}, {name: xml_correctness, params: {value: "high"}}]
    colour: red
    on_failure: shrug
  q:
    rewards: [{name: xml_tag_count}]
    scores: xml_correctness
""",
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("reward-server: profiles.")]
    assert len(lines) == 5, result.stderr
    assert any("profiles.p: unknown key 'colour'" in line for line in lines)
    assert any("profiles.p.on_failure: must be 'marker', 'mask' or 'error'" in line for line in lines)
    assert any("profiles.q.scores: 'xml_correctness' is neither 'total'" in line for line in lines)
    assert any("profiles.p.rewards[0] (no_such_reward): unknown reward" in line for line in lines)
    fixed = _start_expecting_exit(
        tmp_path,
        "profiles:\n  p:\n    rewards: [{name: no_such_reward}, {name: xml_correctness, params: {value: x}}]\n",
    )
    assert fixed.returncode == 2
    lines = [line for line in fixed.stderr.splitlines() if line.startswith("reward-server: profiles.")]
    assert len(lines) == 2, fixed.stderr
    assert "profiles.p.rewards[0] (no_such_reward): unknown reward 'no_such_reward'" in lines[0]
    assert "profiles.p.rewards[1] (xml_correctness):" in lines[1] and "value" in lines[1]


def test_sigterm_lets_an_http_call_in_flight_finish(tmp_path) -> None:
    slow = tmp_path / "slow.py"
    slow.write_text(SLOW)
    config = "http_port: 0\nworkers: 1\nprofiles:\n  slow:\n    rewards: [{name: slow_reward}]\n"
    server = start_server(tmp_path, "--rewards-from", str(slow), config=config)
    base = re.search(r"HTTP/JSON on (\S+)", server.log()).group(1)
    try:
        answers = []
        call = threading.Thread(
            target=lambda: answers.append(httpx.post(base + "/slime/slow", json={"response": "x"}, timeout=60))
        )
        call.start()
        deadline = 0
        while "slow_reward" not in server.log() and deadline < 100:
            threading.Event().wait(0.05)
            deadline += 1
        threading.Event().wait(0.5)  # the call is being scored
        server.process.send_signal(signal.SIGTERM)
        call.join(30)
        assert answers and answers[0].status_code == 200 and answers[0].json() == 1.0
        assert server.process.wait(30) == 0
    finally:
        stop_server(server)


def test_profile_shape_and_builtin_rewards_are_checked_by_config_validation() -> None:
    """ServerConfig.validate: no server, no registry of plugins or models needed; every problem on its line."""
    from reward_server.config import load_config
    from reward_server.transport.profiles import ProfileError

    config = load_config(
        None,
        profiles={
            "p": {"rewards": [{"name": "xml_corectness"}, {"name": "xml_tag_count", "params": {"nope": 1}}]},
            "q": {"rewards": ["xml_tag_count"], "label_feld": "answer", "on_failure": "shrug"},
            "r": {"rewards": [{"name": "my_rm", "params": {"anything": 1}}]},  # a reward model's: checked later
        },
        reward_models=["my_rm=/nowhere"],
    )
    with pytest.raises(ProfileError) as caught:
        config.validate()
    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert "profiles.p.rewards[0] (xml_corectness): unknown reward 'xml_corectness'" in problems[2]
    assert problems[3].startswith("profiles.p.rewards[1] (xml_tag_count):") and "nope" in problems[3]
    assert problems[0].startswith("profiles.q: unknown key 'label_feld'")
    assert problems[1].startswith("profiles.q.on_failure: must be 'marker', 'mask' or 'error'")
    load_config(None, profiles={"r": {"rewards": [{"name": "my_rm"}]}}, reward_models=["my_rm=/nowhere"]).validate()
    with pytest.raises(ConfigError, match=r"http_port .* is also the gRPC or metrics port"):
        load_config(None, port=50051, http_port=50051).validate()


def test_a_profile_typo_exits_2_before_any_model_loads(tmp_path) -> None:
    """A plugin's reward misspelt in a profile, beside a reward model that cannot load: the profile's line, exit 2,
    and the model is never tried (the profile check runs once the plugins are imported, before models and judges)."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text("def my_reward(completions, **kwargs):\n    return [1.0] * len(completions)\n")
    config = f"""
rewards_from: [{plugin}]
reward_models: [{{name: rm, model: {tmp_path / "no-such-model"}}}]
http_port: 0
profiles:
  p:
    rewards: [{{name: my_rewrd}}, {{name: rm}}]
"""
    result = _start_expecting_exit(tmp_path, config)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("reward-server: ")]
    assert len(lines) == 1, result.stderr
    assert "profiles.p.rewards[0] (my_rewrd): unknown reward 'my_rewrd'" in lines[0]
    assert "my_reward" in lines[0]  # the closest known name, the plugin's
    assert "cannot load model" not in result.stderr
