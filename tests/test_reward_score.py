"""reward-score over JSONL against the real reward server: bad lines reported by number, nothing scored is lost."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, start_server, stop_server

from trainer_client import RetryPolicy, RewardClient, RewardServiceError
from trainer_client.score_cli import Summary, read_lines, score_stream

REWARD_SCORE = str(Path(sys.executable).parent / "reward-score")
REASONED = "<reasoning>\nweil\n</reasoning>\n<answer>\n42\n</answer>\n"
GOOD = [
    {"id": "a", "prompt": "6*7?", "completion": REASONED, "fields": {"answer": "42"}},
    {
        "prompt": [{"role": "user", "content": "2+2?"}],
        "completion": [{"role": "assistant", "content": "<answer>4</answer>"}],
        "fields": {"answer": 4},
    },
    {"completion": "<answer>5</answer>", "fields": {"answer": "6"}},
]


def write_input(path: Path) -> Path:
    lines = [
        json.dumps(GOOD[0]),
        json.dumps(GOOD[1]),
        '{"completion": "broken',  # line 3: malformed JSON
        json.dumps({"completion": "x", "fields": {}}),  # line 4: no 'answer' field
        "[1, 2]",  # line 5: not an object
        "",  # blank lines are skipped silently
        json.dumps({"prompt": "q", "fields": {"answer": "1"}}),  # line 7: no completion
        json.dumps(GOOD[2]),  # line 8
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("score"), "--workers", "0")
    yield running
    stop_server(running)


def reward_score(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [REWARD_SCORE, *args], capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})}, timeout=120
    )


def test_bad_lines_are_reported_by_number_and_the_rest_is_scored(server, tmp_path) -> None:
    out = tmp_path / "scores.jsonl"
    done = reward_score(
        str(write_input(tmp_path / "in.jsonl")),
        "-o",
        str(out),
        "--reward",
        "correctness_reward_func",
        "--reward",
        "xml_strict_format:0.5",
        "--param",
        "xml_strict_format.value=1",
        "--batch-size",
        "2",
        env={"REWARD_SERVICE_TARGET": server.address},
    )
    assert done.returncode == 3, done.stderr  # finished, with bad lines skipped
    assert "line 3: not valid JSON" in done.stderr
    assert "line 4: fields has no 'answer'" in done.stderr
    assert "line 5: expected a JSON object, got list" in done.stderr
    assert "line 7: no 'completion'" in done.stderr
    assert "line 6" not in done.stderr and "line 1:" not in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 8]
    assert rows[0]["id"] == "a" and "id" not in rows[1]
    expected = RewardClient(server.address).score(
        GOOD, ["correctness_reward_func", {"name": "xml_strict_format", "weight": 0.5, "params": {"value": 1}}]
    )
    assert [r["scores"] for r in rows] == [
        {"correctness_reward_func": c, "xml_strict_format": s}
        for c, s in zip(expected["correctness_reward_func"], expected["xml_strict_format"], strict=True)
    ]
    assert [r["total"] for r in rows] == expected.total == [2.5, 2.0, 0.0]
    # The summary table: mean, std and NaN count per reward and for the total.
    table = done.stderr[done.stderr.index("reward ") :]
    assert table.splitlines()[0].split() == ["reward", "mean", "std", "nan", "n"]
    assert table.splitlines()[2].split() == ["correctness_reward_func", "1.3333", "0.9428", "0", "3"]
    assert "3 samples scored, 4 bad lines skipped" in done.stderr


def test_rewards_from_a_recipe_file_and_stdout(server, tmp_path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in GOOD))
    done = reward_score(
        str(source),
        "--target",
        server.address,
        "--rewards-file",
        str(REPO / "configs" / "seed002_qwen2.5-1.5b_gsm8k.yaml"),
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 3 and list(rows[0]["scores"]) == [
        "xmlcount_reward_func",
        "soft_format_reward_func",
        "strict_format_reward_func",
        "int_reward_func",
        "correctness_reward_func",
    ]
    assert rows[0]["scores"]["correctness_reward_func"] == 2.0


def test_usage_and_service_errors_fail_fast(server, tmp_path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(GOOD[0]) + "\n")
    no_rewards = reward_score(str(source), "--target", server.address)
    assert no_rewards.returncode == 2 and "name at least one reward" in no_rewards.stderr
    unknown = reward_score(str(source), "--target", server.address, "--reward", "corectness_reward_func")
    assert unknown.returncode == 1 and "closest: correctness_reward_func" in unknown.stderr


def test_a_sample_the_server_refuses_is_reported_and_its_batch_still_scored(server) -> None:
    # needed=[] skips the local field check, so the server's own refusal (samples[i] ...) is what is handled.
    text = "".join(json.dumps(s) + "\n" for s in [GOOD[0], {"completion": "x", "fields": {}}, GOOD[2]])
    reports: list[str] = []
    out = io.StringIO()
    client = RewardClient(server.address)
    summary = asyncio.run(
        score_stream(
            client, ["xml_correctness"], read_lines(io.StringIO(text), [], reports.append), out, report=reports.append
        )
    )
    assert [json.loads(line)["line"] for line in out.getvalue().splitlines()] == [1, 3]
    assert reports == [
        "line 2: refused by the server: samples[1] has no field 'answer', which reward 'xml_correctness' reads"
    ]
    assert summary.scored == 2


def test_a_service_failure_keeps_everything_already_scored(tmp_path) -> None:
    server = start_server(tmp_path, "--workers", "0")
    text = "".join(
        json.dumps({"completion": f"<answer>{i}</answer>", "fields": {"answer": str(i)}}) + "\n" for i in range(1, 9)
    )

    def source():
        # The server dies once four lines were handed out (and, with concurrency 1, scored).
        for line in read_lines(io.StringIO(text), ["answer"], print):
            if line.number == 5:
                stop_server(server)
            yield line

    out, reports, summary = io.StringIO(), [], Summary()
    client = RewardClient(server.address, deadline_s=5, retry=RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.2))
    with pytest.raises(RewardServiceError) as caught:
        asyncio.run(
            score_stream(
                client,
                ["xml_correctness"],
                source(),
                out,
                batch_size=2,
                concurrency=1,
                report=reports.append,
                summary=summary,
            )
        )
    assert caught.value.code.name == "UNAVAILABLE"
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4] and all(r["total"] == 2.0 for r in rows)
    assert summary.scored == 4 and reports[0].startswith("lines 5-6: not scored")


def test_token_ids_typed_fields_and_extra_columns(server, tmp_path) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        {"id": 1, "completion": "\\boxed{4}", "fields": {"solution": "$4$", "n": 4}, "completion_ids": [1] * 90},
        {"completion": "\\boxed{5}", "fields": {"solution": "$4$"}},  # line 2: no completion_ids
        {"prompt": "2+2?", "completion": "\\boxed{5}", "fields": {"solution": "$4$"}, "completion_ids": []},
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    done = reward_score(
        str(source),
        "-o",
        str(out),
        "--target",
        server.address,
        "--reward",
        "accuracy_reward",
        "--reward",
        "soft_overlong_punishment_reward",
        "--param",
        "soft_overlong_punishment_reward.max_completion_len=100",
        "--param",
        "soft_overlong_punishment_reward.soft_punish_cache=20",
        "--no-progress",
    )
    assert done.returncode == 3, done.stderr
    assert "line 2: no 'completion_ids', which reward 'soft_overlong_punishment_reward' reads" in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 3]
    assert [r["scores"] for r in rows] == [
        {"accuracy_reward": 1.0, "soft_overlong_punishment_reward": -0.5},
        {"accuracy_reward": 0.0, "soft_overlong_punishment_reward": 0.0},
    ]
    # Extra columns per reward, one value per line; the catalogue version that scored each line.
    assert list(rows[0]["extra_columns"]) == ["accuracy_reward"]
    assert rows[0]["extra_columns"]["accuracy_reward"]["solution"] == "$4$"
    assert set(rows[1]["extra_columns"]["accuracy_reward"]) == {"solution", "gold_parsed", "answer_parsed"}
    assert rows[0]["catalogue_version"] == RewardClient(server.address).catalogue().catalogue_version
