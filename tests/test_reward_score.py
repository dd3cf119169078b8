"""reward-score over JSONL against the real reward server: bad lines reported by number, nothing scored is lost,
every null score says why (a plugin file written here serves a reward per kind of failure)."""

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
from outcome_plugin import write_plugin

from trainer_client import RetryPolicy, RewardClient, RewardServiceError
from trainer_client.score.inputs import read_lines
from trainer_client.score.report import Summary
from trainer_client.score.stream import score_stream

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
    folder = tmp_path_factory.mktemp("score")
    running = start_server(folder, "--workers", "0", "--rewards-from", str(write_plugin(folder)))
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
    assert "line 4: no field 'answer', which reward 'correctness_reward_func' reads; the line has []" in done.stderr
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
    table = done.stderr[done.stderr.index("\nreward ") + 1 :]
    assert table.splitlines()[0].split() == ["reward", "mean", "std", "nan", "n"]
    assert table.splitlines()[2].split() == ["correctness_reward_func", "1.3333", "0.9428", "0", "3"]
    assert "3 lines written, 4 bad lines skipped" in done.stderr


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
    assert reports == ["line 2 has no field 'answer', which reward 'xml_correctness' reads (refused by the server)"]
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


def test_a_broken_reward_writes_its_reason_and_fails_the_run(server, tmp_path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"completion": c}) + "\n" for c in ("fine", "down", "n/a")))
    out = tmp_path / "out.jsonl"
    args = (str(source), "-o", str(out), "--target", server.address, "--reward", "broken_reward", "--reward", "judge")
    done = reward_score(*args, "--no-progress")
    assert done.returncode == 4, done.stderr  # a reward error (and an unavailable judge) is not a clean run
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["scores"] for r in rows] == [
        {"broken_reward": None, "judge": 1.0},
        {"broken_reward": None, "judge": None},
        {"broken_reward": None, "judge": None},
    ]
    error = {"kind": "reward_error", "reason": "broken_reward raised ZeroDivisionError: division by zero"}
    assert [r["notes"] for r in rows] == [
        {"broken_reward": error},
        {"broken_reward": error, "judge": {"kind": "unavailable", "reason": "judge: judge endpoint is down"}},
        {"broken_reward": error, "judge": {"kind": "not_applicable", "reason": "nothing to judge"}},
    ]
    # Each distinct reason once on stderr, with its count.
    reasons = [line for line in done.stderr.splitlines() if line.startswith("reward-score: ")]
    assert reasons == [
        "reward-score: broken_reward: reward_error on 3 samples: " + error["reason"],
        "reward-score: judge: unavailable on 1 sample: judge: judge endpoint is down",
        "reward-score: judge: not_applicable on 1 sample: nothing to judge",
    ]
    assert "3 lines written, 0 bad lines skipped; 4 scores are null because a reward failed" in done.stderr
    allowed = reward_score(*args, "--no-progress", "--allow-failed")
    assert allowed.returncode == 0, allowed.stderr
    # Only "does not apply" is a clean run.
    applies = tmp_path / "na.jsonl"
    applies.write_text(json.dumps({"completion": "n/a"}) + "\n")
    clean = reward_score(str(applies), "--target", server.address, "--reward", "judge", "--no-progress")
    assert clean.returncode == 0 and json.loads(clean.stdout)["notes"]["judge"]["kind"] == "not_applicable"


def test_a_scored_sample_keeps_its_note(server, tmp_path) -> None:
    """A note on a finite score (a dropped log_extra column) is written on its line and tallied; the run is clean."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"completion": c}) + "\n" for c in ("a", "b")))
    done = reward_score(str(source), "--target", server.address, "--reward", "short_log", "--no-progress")
    assert done.returncode == 0, done.stderr
    dropped = "short_log: log_extra('verdict') got 1 values for 2 completions; dropped"
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["scores"], r["notes"]) for r in rows] == [
        ({"short_log": 0.5}, {"short_log": {"kind": "scored", "reason": dropped}})
    ] * 2
    assert f"reward-score: short_log: scored on 2 samples: {dropped}" in done.stderr.splitlines()


def test_mixed_prompt_shapes_and_flat_trl_rows(server, tmp_path) -> None:
    chat = [{"role": "user", "content": "What is 2+2?"}]
    lines = [
        {"prompt": "6*7?", "completion": "\\boxed{42}", "solution": "$42$"},  # flat: solution is a column
        {"prompt": chat, "completion": [{"role": "assistant", "content": "\\boxed{4}"}], "solution": "$4$"},
        {"completion": "\\boxed{5}", "fields": {"solution": "$5$"}, "id": 3},  # no prompt, nested fields
        {"prompt": "1+1?", "completion": "\\boxed{2}", "solution": "$2$", "fields": {"solution": "$3$"}},  # twice
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = reward_score(
        str(source), "--target", server.address, "--reward", "prompt_chars", "--reward", "accuracy_reward"
    )
    assert done.returncode == 3, done.stderr  # line 4 is refused; nothing else is lost
    assert "line 4: 'solution' is both a top-level key and in 'fields'; give it once" in done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    # A TRL function reading prompts gets one shape per call: the chat line is not mixed with the plain ones.
    assert [r["line"] for r in rows] == [1, 2, 3] and rows[2]["id"] == 3
    assert [r["scores"]["prompt_chars"] for r in rows] == [4.0, 12.0, 0.0]
    assert [r["scores"]["accuracy_reward"] for r in rows] == [1.0, 1.0, 1.0]
    assert all("notes" not in r for r in rows)


def test_list_prints_the_catalogue(server) -> None:
    done = reward_score("--list", "--target", server.address)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["name", "aliases", "fields", "params", "source", "enabled"]
    rows = {line.split()[0]: line.split() for line in lines[2:] if line and not line.startswith(" ")}
    plugin = str(server.log_path.parent / "outcome_rewards.py")
    assert rows["broken_reward"] == ["broken_reward", "-", "-", "-", plugin, "yes"]
    assert rows["judge"] == ["judge", "-", "-", "-", plugin, "yes"]
    assert rows["accuracy_reward"] == [
        "accuracy_reward",
        "-",
        "solution",
        'solution_field="solution"',
        "built-in",
        "yes",
    ]
    assert rows["xml_tag_count"][:3] == ["xml_tag_count", "xmlcount_reward_func", "-"]
    assert rows["xml_tag_count"][-2:] == ["built-in", "yes"]
    assert rows["sentiment_match"][rows["sentiment_match"].index("built-in") + 1] == "no:"
    catalogue = RewardClient(server.address).catalogue()
    assert done.stdout.rstrip().endswith(
        f"{len(catalogue.rewards)} rewards (server {catalogue.server_version}, "
        f"catalogue version {catalogue.catalogue_version})"
    )
    usage = reward_score("--target", server.address)
    assert usage.returncode == 2 and "give an input file (or '-' for stdin), or --list" in usage.stderr
