"""remote_reward_funcs against the real reward server: one Score call per batch, TRL's calling convention."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from conftest import NOTEBOOK_REWARDS, free_port, start_server, stop_server

from trainer_client import RetryPolicy, RewardClient, RewardServiceError, remote_reward_funcs
from trainer_client.trl_adapter import FAILED_METRIC, RTT_METRIC, SERVER_METRIC

REASONED = "<reasoning>\nweil\n</reasoning>\n<answer>\n42\n</answer>\n"
PROMPTS = [[{"role": "user", "content": "6*7?"}]] * 2 + [[{"role": "user", "content": "2+2?"}]] * 2
COMPLETIONS = [
    [{"role": "assistant", "content": c}] for c in (REASONED, "<answer>41</answer>", "<answer>4</answer>", "")
]


class Metrics:
    """Collects what the reward functions log through TRL's ``log_metric`` keyword."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def __call__(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)


def trl_call(funcs, prompts, completions, **columns):
    """Call the functions the way GRPOTrainer does: every async one gathered, same lists, extra kwargs."""
    metrics = Metrics()

    async def gather():
        kwargs = {"completion_ids": [[1]] * len(completions), "trainer_state": None, "log_metric": metrics, **columns}
        return await asyncio.gather(*(f(prompts=prompts, completions=completions, **kwargs) for f in funcs))

    return asyncio.run(gather()), metrics


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("adapter"), config="workers: 1\nmath_timeout_s: 1.0\n")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server):
    return RewardClient(server.address, deadline_s=30)


def test_one_score_call_per_batch_for_all_functions(server, client) -> None:
    funcs = remote_reward_funcs(client, NOTEBOOK_REWARDS)
    assert [f.__name__ for f in funcs] == NOTEBOOK_REWARDS
    answers = ["42", "42", 4, "4"]  # an int column value is sent stringified
    before = server.score_calls()
    outputs, metrics = trl_call(funcs, PROMPTS, COMPLETIONS, answer=answers)
    assert server.score_calls() == before + 1
    direct = client.score(
        [
            {"prompt": p, "completion": c, "fields": {"answer": str(a)}}
            for p, c, a in zip(PROMPTS, COMPLETIONS, answers, strict=True)
        ],
        NOTEBOOK_REWARDS,
    )
    assert outputs == [direct[name] for name in NOTEBOOK_REWARDS]
    assert outputs[-1] == [2.0, 0.0, 2.0, 0.0]  # correctness
    assert len(metrics.values[RTT_METRIC]) == 1 and metrics.values[RTT_METRIC][0] > 0
    assert len(metrics.values[SERVER_METRIC]) == 1 and metrics.values[FAILED_METRIC] == [0.0]


def test_the_next_batch_is_a_new_call_even_with_equal_content(server, client) -> None:
    funcs = remote_reward_funcs(client, ["xml_integer", "xml_soft_format"])
    before = server.score_calls()
    first, _ = trl_call(funcs, PROMPTS, COMPLETIONS)
    second, _ = trl_call(funcs, PROMPTS, COMPLETIONS)
    assert first == second and server.score_calls() == before + 2


def test_standard_completions_weights_and_params(server, client) -> None:
    german = "<Begründung>\nweil\n</Begründung>\n<Antwort>\n42\n</Antwort>"
    tags = {"reasoning_tag": "Begründung", "answer_tag": "Antwort"}
    rewards = [
        {"name": "xml_correctness", "weight": 0.5, "params": tags},
        {"name": "xml_strict_format", "params": tags},
    ]
    funcs = remote_reward_funcs(client, rewards)
    (correct, strict), _ = trl_call(funcs, ["6*7?", "6*7?"], [german, "42"], answer=["42", "42"])
    # Scores come back unweighted: TRL applies GRPOConfig.reward_weights itself.
    assert correct == [2.0, 0.0] and strict == [0.5, 0.0]


def test_nan_becomes_none(server, client) -> None:
    hanging = ("\\boxed{(x+1)^{2999}*(x+2)}", "(x+1)^{3000}")  # math-verify hangs; the server's 1 s limit → NaN
    funcs = remote_reward_funcs(client, ["math_equivalence"])
    (scores,), _ = trl_call(funcs, ["q", "q"], [hanging[0], "\\boxed{4}"], answer=[hanging[1], "4"])
    assert scores == [None, 1.0]


def test_record_to_writes_every_scored_batch(server, client, tmp_path) -> None:
    record = tmp_path / "scored.jsonl"
    funcs = remote_reward_funcs(client, ["correctness_reward_func"], record_to=record)
    trl_call(funcs, PROMPTS, COMPLETIONS, answer=["42"] * 4)
    (line,) = [json.loads(x) for x in record.read_text().splitlines()]
    assert line["scores"] == {"correctness_reward_func": [2.0, 0.0, 0.0, 0.0]}
    assert line["samples"][0] == {"prompt": PROMPTS[0], "completion": REASONED, "fields": {"answer": "42"}}
    assert line["request_id"] in server.log()


def test_a_failure_raises_or_returns_none_but_never_zero(caplog) -> None:
    dead = f"127.0.0.1:{free_port()}"
    client = RewardClient(dead, deadline_s=5, retry=RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.2))
    with pytest.raises(RewardServiceError) as caught:
        trl_call(remote_reward_funcs(client, ["xml_integer"]), ["q"], ["x"])
    assert caught.value.code.name == "UNAVAILABLE"
    funcs = remote_reward_funcs(client, ["xml_integer", "xml_soft_format"], on_error="none")
    with caplog.at_level(logging.ERROR, logger="trainer_client.trl_adapter"):
        outputs, metrics = trl_call(funcs, ["q", "q"], ["x", "y"])
    assert outputs == [[None, None], [None, None]]
    assert metrics.values[FAILED_METRIC] == [1.0]
    assert "REWARD SERVICE FAILED" in caplog.text and "UNAVAILABLE" in caplog.text
    assert funcs[0].remote.stats.failures == 1


def test_bad_reward_lists_are_refused_up_front(client) -> None:
    with pytest.raises(ValueError, match="listed twice"):
        remote_reward_funcs(client, ["xml_integer", {"name": "xml_integer"}])
    with pytest.raises(ValueError, match="on_error"):
        remote_reward_funcs(client, ["xml_integer"], on_error="zero")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        remote_reward_funcs(client, [])
