"""buf curl against the running server: reflection lets callers work with no .proto at hand."""

from __future__ import annotations

import json
import subprocess

from test_proto import buf_executable


def buf_curl(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [buf_executable(), "curl", "--protocol", "grpc", "--http2-prior-knowledge", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_reflection_lists_the_service(server) -> None:
    result = buf_curl(server, "--list-methods", f"http://{server.address}")
    assert result.returncode == 0, result.stderr
    assert "reward.v1.RewardService/Score" in result.stdout
    assert "reward.v1.RewardService/ListRewards" in result.stdout


def test_buf_curl_calls_score_and_list_rewards(server) -> None:
    body = {
        "samples": [
            {"completion": "<reasoning>\nx\n</reasoning>\n<answer>\n42\n</answer>", "fields": {"answer": "42"}}
        ],
        "rewards": [{"name": "correctness_reward_func"}, {"name": "xml_strict_format", "weight": 2}],
    }
    result = buf_curl(server, "-d", json.dumps(body), f"http://{server.address}/reward.v1.RewardService/Score")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert [r["name"] for r in reply["results"]] == ["xml_correctness", "xml_strict_format"]
    assert [r["scores"] for r in reply["results"]] == [[2.0], [0.5]]
    assert reply["total"] == [3.0]

    listed = buf_curl(server, f"http://{server.address}/reward.v1.RewardService/ListRewards")
    assert listed.returncode == 0, listed.stderr
    assert "tfidf_similarity" in {r["name"] for r in json.loads(listed.stdout)["rewards"]}
