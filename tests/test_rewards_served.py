"""TRL's and open-r1's rewards through a real server process: token ids on the wire, extra columns back,
the catalogue, the missing-ids error, and math-verify's hard time limit from a scoring thread."""

from __future__ import annotations

import math

import grpc
import pytest
from conftest import start_server, stop_server
from google.protobuf import struct_pb2
from registry_scoring import as_none, conversational, log_extra_of, score
from trl.rewards import (
    accuracy_reward,
    get_cosine_scaled_reward,
    get_repetition_penalty_reward,
    get_soft_overlong_punishment,
    reasoning_accuracy_reward,
    think_format_reward,
)

from reward.v1 import reward_pb2 as pb

TRL_NAMES = {
    "accuracy_reward",
    "reasoning_accuracy_reward",
    "think_format_reward",
    "cosine_scaled_reward",
    "repetition_penalty_reward",
    "soft_overlong_punishment_reward",
}
OPEN_R1_NAMES = {
    "open_r1_accuracy",
    "open_r1_format",
    "open_r1_tag_count",
    "open_r1_reasoning_steps",
    "open_r1_cosine",
    "open_r1_repetition_penalty",
    "open_r1_length",
}
COMPLETIONS = [
    "<think>\nadd them\n</think>\nThe answer is \\boxed{\\frac{1}{2}}.",
    "<think>\nhm</think> \\boxed{3} \\boxed{3} \\boxed{3}",
    "no reasoning, \\boxed{0.5}",
    "Answer is \\boxed{42}.",
]
SOLUTIONS = ["0.5", "4", "\\frac{1}{2}", "Answer is forty two."]
IDS = [[1, 2, 3, 4, 5], [7, 7, 7, 7, 7, 7, 7, 7, 7], list(range(30)), []]
CHAT = [{"role": "user", "content": "What is one half?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("std-rewards"), "--workers", "1")
    yield running
    stop_server(running)


def sample(i: int, *, with_ids: bool = True, plain: bool = False) -> pb.Sample:
    """Sample i; even ones plain (prompt_text), odd ones conversational (prompt turns), unless ``plain``."""
    kwargs = {"prompt_text": "What is one half?"} if plain or i % 2 == 0 else {"prompt": [pb.ChatMessage(**CHAT[0])]}
    if with_ids:
        kwargs["completion_ids"] = pb.TokenIds(ids=IDS[i])
    return pb.Sample(completion=COMPLETIONS[i], fields={"solution": SOLUTIONS[i]}, **kwargs)


def spec(name: str, **params) -> pb.RewardSpec:
    struct = struct_pb2.Struct()
    struct.update(params)
    return pb.RewardSpec(name=name, params=struct)


def by_name(response: pb.ScoreResponse) -> dict[str, pb.RewardScores]:
    return {r.name: r for r in response.results}


def test_catalogue_lists_them_with_what_they_read(server) -> None:
    infos = {r.name: r for r in server.stub().ListRewards(pb.ListRewardsRequest()).rewards}
    assert set(infos) >= TRL_NAMES | OPEN_R1_NAMES
    token_readers = {n for n, info in infos.items() if info.reads_completion_ids}
    assert token_readers >= {"cosine_scaled_reward", "repetition_penalty_reward", "soft_overlong_punishment_reward"}
    assert not token_readers & (OPEN_R1_NAMES | {"accuracy_reward", "think_format_reward", "math_equivalence"})
    params = {p.name: p for p in infos["reasoning_accuracy_reward"].params}
    assert params["reasoning_delimiters"].type == pb.PARAM_TYPE_STRING_LIST
    assert {p.name: p.type for p in infos["soft_overlong_punishment_reward"].params} == {
        "max_completion_len": pb.PARAM_TYPE_INTEGER,
        "soft_punish_cache": pb.PARAM_TYPE_INTEGER,
    }
    assert list(infos["accuracy_reward"].fields) == ["solution"] and infos["accuracy_reward"].source == "built-in"


def test_trl_rewards_over_the_wire_equal_trls_functions(server) -> None:
    request = pb.ScoreRequest(
        samples=[sample(i) for i in range(4)],
        rewards=[
            spec("accuracy_reward"),
            spec("reasoning_accuracy_reward", reasoning_delimiters=["</reasoning>", "</think>"]),
            spec("think_format_reward"),
            spec("cosine_scaled_reward", max_len=20),
            spec("repetition_penalty_reward", ngram_size=2, max_penalty=-0.5),
            spec("soft_overlong_punishment_reward", max_completion_len=20, soft_punish_cache=10),
        ],
    )
    results = by_name(server.stub().Score(request))
    chat = conversational(COMPLETIONS)
    expected_accuracy, logged = log_extra_of(accuracy_reward, chat, SOLUTIONS)
    expected = {
        "accuracy_reward": expected_accuracy,
        "reasoning_accuracy_reward": reasoning_accuracy_reward(
            chat, SOLUTIONS, reasoning_delimiters=["</reasoning>", "</think>"]
        ),
        "think_format_reward": think_format_reward(chat),
        "cosine_scaled_reward": get_cosine_scaled_reward(20)(chat, SOLUTIONS, IDS),
        "repetition_penalty_reward": get_repetition_penalty_reward(2, -0.5)(IDS),
        "soft_overlong_punishment_reward": get_soft_overlong_punishment(20, 10)(IDS),
    }
    assert {name: as_none(list(r.scores)) for name, r in results.items()} == expected
    assert expected_accuracy[3] is None  # the unparsable solution: NaN on the wire, with a note
    assert [n.sample_index for n in results["accuracy_reward"].notes] == [3]
    columns = {c.name: list(c.values) for c in results["accuracy_reward"].extra_columns}
    assert columns == {k: [str(v) for v in values] for k, values in logged.items()}
    assert set(columns) == {"solution", "gold_parsed", "answer_parsed"}


def test_open_r1_rewards_over_the_wire_equal_in_process(server) -> None:
    names = sorted(OPEN_R1_NAMES)
    request = pb.ScoreRequest(
        samples=[sample(i, with_ids=False) for i in range(4)],
        rewards=[*(spec(n) for n in names), spec("open_r1_length", per_prompt=True)],
    )
    response = server.stub().Score(request)
    prompts = ["What is one half?", CHAT, "What is one half?", CHAT]
    for name, result in zip([*names, "open_r1_length"], response.results, strict=True):
        params = {"per_prompt": True} if result is response.results[-1] else {}
        local = score(name, COMPLETIONS, SOLUTIONS, prompts=prompts, **params).scores
        assert as_none(list(result.scores)) == as_none(local), name
    accuracy = by_name(response)["open_r1_accuracy"]  # open-r1 main: an unparsable gold is None (skipped)
    assert math.isnan(accuracy.scores[3])
    assert [(n.sample_index, n.kind) for n in accuracy.notes] == [(3, pb.NOTE_KIND_NOT_APPLICABLE)]


def test_missing_completion_ids_is_invalid_argument_naming_sample_and_reward(server) -> None:
    samples = [sample(0), sample(1, with_ids=False), sample(2)]
    request = pb.ScoreRequest(samples=samples, rewards=[spec("think_format_reward"), spec("repetition_penalty_reward")])
    with pytest.raises(grpc.RpcError) as caught:
        server.stub().Score(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[1] has no completion_ids" in caught.value.details()
    assert "repetition_penalty_reward" in caught.value.details()
    # An empty TokenIds is sent (zero tokens), not missing.
    request = pb.ScoreRequest(samples=[sample(3)], rewards=[spec("soft_overlong_punishment_reward")])
    assert list(server.stub().Score(request).results[0].scores) == [0.0]


def test_math_verify_keeps_its_hard_limit_in_a_scoring_thread(tmp_path) -> None:
    # --workers 0: rewards run in the server's threads, where TRL switches math-verify's limits off.
    running = start_server(tmp_path, "--workers", "0", config="math_timeout_s: 0.000001\n")
    try:
        # Every overrun kills the time-limit helper and the next call restarts it (seconds): one sample per reward.
        request = pb.ScoreRequest(
            samples=[pb.Sample(completion="Some steps. " * 150 + r"\boxed{\frac{1}{2}}", fields={"solution": "$0.5$"})],
            rewards=[spec("accuracy_reward"), spec("open_r1_length")],
        )
        for result in running.stub().Score(request, timeout=120).results:
            assert math.isnan(result.scores[0]), result.name
            assert [n.sample_index for n in result.notes] == [0], result.name
            assert result.notes[0].reason == "math-verify: timed out after 1e-06 s", result.name
    finally:
        stop_server(running)
