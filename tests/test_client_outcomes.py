"""What a NaN means, as the clients hand it out (issue 18 §3): RewardClient.score's outcomes and counts, and
remote_reward_funcs raising on a reward's bug, warning on the rest and checking names when built. A real server
serves a plugin file written here (tests/outcome_plugin.py) with a reward per kind of failure."""

from __future__ import annotations

import asyncio
import logging

import pytest
from conftest import start_server, stop_server
from outcome_plugin import write_plugin

from reward.v1 import reward_pb2 as pb
from trainer_client import Outcome, PreflightError, RemoteRewardError, RewardClient, SampleOutcome, remote_reward_funcs
from trainer_client.trl_adapter import FAILED_SAMPLES_METRIC, NAN_METRIC

ADAPTER_LOG = "trainer_client.trl_adapter"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("outcomes")
    running = start_server(folder, "--workers", "0", "--rewards-from", str(write_plugin(folder)))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server):
    with RewardClient(server.address, deadline_s=30) as client:
        yield client


def trl_call(funcs, completions, **columns):
    """The functions called as GRPOTrainer calls them (gathered, same lists); their outputs and logged metrics."""
    metrics: dict[str, list[float]] = {}
    kwargs = {"trainer_state": None, "log_metric": lambda k, v: metrics.setdefault(k, []).append(v), **columns}
    prompts = ["q"] * len(completions)

    async def gather():
        return await asyncio.gather(*(f(prompts=prompts, completions=completions, **kwargs) for f in funcs))

    return asyncio.run(gather()), metrics


def test_score_says_what_each_nan_means(server, client) -> None:
    samples = [{"completion": c} for c in ("fine", "down", "n/a")]
    result = client.score(samples, ["broken_reward", "judge"])
    broken = result.outcomes("broken_reward")
    assert [o.kind for o in broken] == [Outcome.REWARD_ERROR] * 3
    assert all(o.reason == "broken_reward raised ZeroDivisionError: division by zero" for o in broken)
    assert [(o.kind, o.reason) for o in result.outcomes("judge")] == [
        (Outcome.SCORED, ""),
        (Outcome.UNAVAILABLE, "judge: judge endpoint is down"),
        (Outcome.NOT_APPLICABLE, "nothing to judge"),
    ]
    counts = result.counts
    assert (counts["broken_reward"].reward_error, counts["broken_reward"].scored) == (3, 0)
    assert (counts["judge"].scored, counts["judge"].unavailable, counts["judge"].not_applicable) == (1, 1, 1)
    assert result.reward("judge").failures() == [(1, result.outcomes("judge")[1])]
    # On the wire: the notes carry NOTE_KIND_REWARD_ERROR, and the counts come with the response.
    request = pb.ScoreRequest(samples=[pb.Sample(completion="x")], rewards=[pb.RewardSpec(name="broken_reward")])
    (wire,) = server.stub().Score(request, timeout=30).results
    assert [n.kind for n in wire.notes] == [pb.NOTE_KIND_REWARD_ERROR] and wire.counts.reward_error == 1


def test_a_reward_error_fails_the_step_by_default(client) -> None:
    funcs = remote_reward_funcs(client, ["judge", "broken_reward"])
    with pytest.raises(RemoteRewardError) as caught:
        trl_call(funcs, ["a", "b"])
    error = caught.value
    assert (error.reward, error.sample_index, error.failed, error.total) == ("broken_reward", 0, 2, 2)
    assert error.reason == "broken_reward raised ZeroDivisionError: division by zero"
    assert "reward 'broken_reward' failed on 2 of 2 samples, first sample 0: broken_reward raised" in str(error)


def test_warn_turns_a_reward_error_into_none_and_logs_it_once(client, caplog) -> None:
    funcs = remote_reward_funcs(client, ["broken_reward", "judge"], on_reward_error="warn")
    with caplog.at_level(logging.WARNING, logger=ADAPTER_LOG):
        (broken, judged), metrics = trl_call(funcs, ["a", "b", "c", "d"])
        again, _ = trl_call(funcs, ["a", "b", "c", "d"])
    assert broken == [None] * 4 and judged == [1.0] * 4 and again == [broken, judged]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # two batches, one distinct reason: logged once
    assert warnings[0].startswith("reward broken_reward: reward_error on 4 of 4 samples of a batch (first: sample 0)")
    assert "ZeroDivisionError: division by zero" in warnings[0]
    # The NaN share per reward goes to TRL's metrics (averaged per logging step by TRL).
    assert metrics[NAN_METRIC.format("broken_reward")] == [1.0] and metrics[NAN_METRIC.format("judge")] == [0.0]
    assert metrics[FAILED_SAMPLES_METRIC.format("broken_reward")] == [1.0]


def test_other_kinds_become_none_with_each_reason_logged_once(client, caplog) -> None:
    funcs = remote_reward_funcs(client, ["judge"])  # the default on_reward_error="raise" does not apply to these
    with caplog.at_level(logging.INFO, logger=ADAPTER_LOG):
        ((scores,), metrics) = trl_call(funcs, ["down", "fine", "n/a", "down"])
        trl_call(funcs, ["down", "n/a"])
    assert scores == [None, 1.0, None, None]
    assert metrics[NAN_METRIC.format("judge")] == [0.75] and metrics[FAILED_SAMPLES_METRIC.format("judge")] == [0.5]
    reasons = [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("reward judge:")]
    assert [level for level, _ in reasons] == [logging.WARNING, logging.INFO]  # a failure warns; "n/a" is info
    assert "unavailable on 2 of 4 samples of a batch (first: sample 0)" in reasons[0][1]
    assert reasons[0][1].endswith("judge endpoint is down (each distinct reason is logged once)")
    assert "not_applicable on 1 of 4 samples" in reasons[1][1] and "nothing to judge" in reasons[1][1]


def test_a_note_on_a_scored_sample_is_kept_and_logged(client, caplog) -> None:
    """A TRL function's log_extra column of the wrong length is dropped: the scores stand and the note says so."""
    result = client.score([{"completion": c} for c in ("a", "b")], ["short_log"])
    dropped = "short_log: log_extra('verdict') got 1 values for 2 completions; dropped"
    assert result.outcomes("short_log") == [SampleOutcome(Outcome.SCORED, dropped)] * 2
    assert result.counts["short_log"].scored == 2 and result["short_log"] == [0.5, 0.5]
    funcs = remote_reward_funcs(client, ["short_log"])  # a scored sample's note never raises
    with caplog.at_level(logging.WARNING, logger=ADAPTER_LOG):
        ((scores,), _) = trl_call(funcs, ["a", "b"])
    assert scores == [0.5, 0.5]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"reward short_log: scored on 2 of 2 samples of a batch (first: sample 0), the scores stand: {dropped}"
        " (each distinct reason is logged once)"
    ]


def test_a_typo_fails_when_the_functions_are_built(server, client) -> None:
    before = server.score_calls()
    with pytest.raises(PreflightError, match=r"reward 'brokn_reward' is not known .*closest: broken_reward"):
        remote_reward_funcs(client, ["judge", "brokn_reward"])
    with pytest.raises(PreflightError, match=r"reward 'xml_strict_format': unknown param 'valu'; known params"):
        remote_reward_funcs(client, [{"name": "xml_strict_format", "params": {"valu": 1}}])
    with pytest.raises(PreflightError, match=r"param 'value' must be a number, got 'high'"):
        remote_reward_funcs(client, [{"name": "xml_strict_format", "params": {"value": "high"}}])
    with pytest.raises(PreflightError, match=r"reward 'sentiment_match' is not enabled on this server"):
        remote_reward_funcs(client, ["sentiment_match"])  # served only with --enable-sentiment
    assert server.score_calls() == before  # refused before any batch
