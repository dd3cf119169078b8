"""RewardClient against the real reward server process over loopback: scores, catalogue, health, failures."""

from __future__ import annotations

import asyncio
import math
from concurrent import futures

import grpc
import pytest
from conftest import free_port, start_server, stop_server

import reward_server.rewards  # noqa: F401 - registers the catalogue for in-process reference values
from reward_server.registry import REGISTRY, Batch
from trainer_client import RetryPolicy, RewardClient, RewardServiceError
from trainer_client.errors import InputError

REASONED = "<reasoning>\nweil\n</reasoning>\n<answer>\n42\n</answer>\n"
SAMPLES = [
    {"prompt": "6*7?", "completion": REASONED, "fields": {"answer": "42"}},
    {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "6*7?"}],
        "completion": [{"role": "assistant", "content": "<answer>41</answer>"}],
        "fields": {"answer": 42},  # not a string: sent typed (a number), read as "42" by text rewards
    },
    {"prompt": "2+2?", "completion": "", "fields": {"answer": "4"}},
]
COMPLETIONS = [REASONED, "<answer>41</answer>", ""]


def in_process(name: str, completions: list[str], answers: list[str], **params) -> list[float]:
    """What the reward function itself computes, for comparison with the service."""
    reward = REGISTRY.get(name)
    merged = reward.validate_params(params)
    columns = {p.name: answers for p in reward.params if p.is_field}
    return reward.score_batch(Batch(completions, columns), **merged).scores


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("client"), config="workers: 1\nmath_timeout_s: 1.0\n")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server):
    with RewardClient(server.address, deadline_s=30) as c:
        yield c


def test_score_matches_the_reward_functions_and_keeps_requested_names(client) -> None:
    rewards = ["correctness_reward_func", {"name": "xml_strict_format", "weight": 2.0, "params": {"value": 1.0}}]
    result = client.score(SAMPLES, rewards)
    assert result.names == ["correctness_reward_func", "xml_strict_format"]
    assert [r.name for r in result.rewards] == ["xml_correctness", "xml_strict_format"]
    answers = ["42", "42", "4"]
    assert result["correctness_reward_func"] == in_process("xml_correctness", COMPLETIONS, answers)
    assert result["xml_correctness"] == [2.0, 0.0, 0.0]  # canonical name works too
    assert result["xml_strict_format"] == in_process("xml_strict_format", COMPLETIONS, answers, value=1.0)
    assert result.total == [2.0 + 2.0 * 1.0, 0.0, 0.0]
    assert [r.weight for r in result.rewards] == [1.0, 2.0]
    assert result.request_id and result.server_version and result.rtt_ms > 0 and result.server_ms > 0


def test_score_async_equals_score(client) -> None:
    rewards = ["xml_tag_count", "int_reward_func"]

    async def both():
        return await asyncio.gather(client.score_async(SAMPLES, rewards), client.score_async(SAMPLES[:1], rewards))

    full, first = asyncio.run(both())
    assert full.as_dict() == client.score(SAMPLES, rewards).as_dict()
    assert first.as_dict() == {name: scores[:1] for name, scores in full.as_dict().items()}


def test_nan_where_a_reward_does_not_apply(client) -> None:
    # math-verify hangs on this pair; the server's 1 s limit turns that sample into NaN with a note.
    hanging = {"completion": "\\boxed{(x+1)^{2999}*(x+2)}", "fields": {"answer": "(x+1)^{3000}"}}
    result = client.score(
        [hanging, {"completion": "\\boxed{\\frac{1}{2}}", "fields": {"answer": "0.5"}}], ["math_equivalence"]
    )
    assert math.isnan(result["math_equivalence"][0]) and result["math_equivalence"][1] == 1.0
    assert "timed out" in result.rewards[0].notes[0]
    assert math.isnan(result.total[0])


def test_list_rewards_and_health(client) -> None:
    catalogue = {r.name: r for r in client.list_rewards()}
    assert set(catalogue) == {r.name for r in REGISTRY}
    correctness = catalogue["xml_correctness"]
    assert correctness.aliases == ["correctness_reward_func"] and correctness.fields == ["answer"]
    assert correctness.fields_read({"reference_field": "solution"}) == ["solution"]
    value = next(p for p in correctness.params if p.name == "value")
    assert (value.type, value.default) == ("number", 2.0)
    assert client.health() is True


def test_a_refused_request_raises_with_status_and_server_message(client) -> None:
    with pytest.raises(RewardServiceError) as caught:
        client.score(SAMPLES, ["correctness_reward_fun"])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown reward 'correctness_reward_fun'" in caught.value.details
    assert "correctness_reward_func" in caught.value.details  # the server's suggestion travels verbatim
    with pytest.raises(RewardServiceError) as caught:
        client.score([{"completion": "x", "fields": {}}], ["xml_correctness"])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[0] has no field 'answer'" in caught.value.details


def test_malformed_input_is_refused_before_sending(client) -> None:
    with pytest.raises(InputError, match="sample 1: no 'completion'"):
        client.score([SAMPLES[0], {"prompt": "x"}], ["xml_integer"])
    with pytest.raises(InputError, match=r"rewards\[0\].*weight must be a number"):
        client.score(SAMPLES, [{"name": "xml_integer", "weight": "heavy"}])


def test_unreachable_service_raises_unavailable_after_the_retries() -> None:
    client = RewardClient(f"127.0.0.1:{free_port()}", deadline_s=10, retry=RetryPolicy(initial_backoff_s=0.05))
    with pytest.raises(RewardServiceError) as caught:
        client.score(SAMPLES, ["xml_integer"])
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.method == "Score" and caught.value.target.startswith("127.0.0.1:")
    with pytest.raises(RewardServiceError):
        client.health(deadline_s=2)


def test_round_robin_skips_a_dead_replica(server, tmp_path) -> None:
    # The dead replica is listed first (pick_first would fail on it or stay on the next one); every call must
    # reach a live one, and round robin must use both live ones, as their own logs show.
    other = start_server(tmp_path, "--workers", "0")
    try:
        logged_before = server.log().count("Score request_id=")
        client = RewardClient([f"127.0.0.1:{free_port()}", server.address, other.address], deadline_s=10)
        assert client.target.startswith("ipv4:")
        results: list[list[float]] = []

        def calls() -> tuple[int, int]:
            return server.log().count("Score request_id=") - logged_before, other.log().count("Score request_id=")

        while len(results) < 50 and min(calls()) == 0:  # until round robin has used both
            results.append(client.score(SAMPLES, ["correctness_reward_func"])["correctness_reward_func"])
        assert results == [[2.0, 0.0, 0.0]] * len(results)
        assert min(calls()) >= 1 and sum(calls()) == len(results), calls()
    finally:
        stop_server(other)


def test_a_replica_killed_between_calls_is_left_out(server, tmp_path) -> None:
    victim = start_server(tmp_path, "--workers", "0")
    try:
        client = RewardClient(f"{server.address},{victim.address}", deadline_s=10)
        before = []
        while len(before) < 50 and "Score request_id=" not in victim.log():  # until round robin has used it
            before.append(client.score(SAMPLES, ["xml_integer"]).as_dict())
        assert "Score request_id=" in victim.log()
        victim.process.kill()
        victim.process.wait()
        after = [client.score(SAMPLES, ["xml_integer"]).as_dict() for _ in range(6)]
        assert after == before[:1] * 6
    finally:
        stop_server(victim)


def test_token_is_sent_as_bearer_metadata() -> None:
    # A plain gRPC server on loopback that records what arrives on the wire for the health check
    # (the reward server's own token check lives in its tests); the client is the code under test.
    from grpc_health.v1 import health_pb2

    seen: list[tuple] = []

    def check(request, context):
        seen.append(tuple(context.invocation_metadata()))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check,
                request_deserializer=health_pb2.HealthCheckRequest.FromString,
                response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
            )
        },
    )
    recorder = grpc.server(futures.ThreadPoolExecutor(max_workers=1), handlers=[handler])
    port = recorder.add_insecure_port("127.0.0.1:0")
    recorder.start()
    try:
        assert RewardClient(f"127.0.0.1:{port}", token="s3cret").health() is True
        assert RewardClient(f"127.0.0.1:{port}").health() is True
    finally:
        recorder.stop(None)
    assert ("authorization", "Bearer s3cret") in seen[0]
    assert not any(key == "authorization" for key, _ in seen[1])


def test_catalogue_carries_versions_sources_and_who_reads_token_ids(client) -> None:
    catalogue = client.catalogue()
    assert catalogue.catalogue_version and catalogue.server_version
    assert [r.name for r in catalogue.rewards] == [r.name for r in client.list_rewards()]
    correctness = catalogue.find("correctness_reward_func")
    assert correctness is not None and correctness.name == "xml_correctness"
    assert correctness.source == "built-in" and correctness.code_version and not correctness.reads_completion_ids
    overlong = catalogue.find("soft_overlong_punishment_reward")
    assert overlong is not None and overlong.reads_completion_ids
    assert {p.name: p.type for p in overlong.params}["max_completion_len"] == "integer"
    assert catalogue.find("no_such_reward") is None
    result = client.score(SAMPLES, ["xml_integer"])
    assert result.catalogue_version == catalogue.catalogue_version


def test_token_ids_and_extra_columns_round_trip(client) -> None:
    samples = [
        {"prompt": "q", "completion": "\\boxed{4}", "fields": {"solution": "$4$"}, "completion_ids": [1] * 90},
        {"prompt": "q", "completion": "\\boxed{5}", "fields": {"solution": "$4$"}, "completion_ids": []},
    ]
    params = {"max_completion_len": 100, "soft_punish_cache": 20}
    result = client.score(samples, ["accuracy_reward", {"name": "soft_overlong_punishment_reward", "params": params}])
    assert result["accuracy_reward"] == [1.0, 0.0] and result["soft_overlong_punishment_reward"] == [-0.5, 0.0]
    accuracy, overlong = result.rewards
    assert set(accuracy.extra_columns) == {"solution", "gold_parsed", "answer_parsed"}
    assert accuracy.extra_columns["solution"] == ["$4$", "$4$"] and overlong.extra_columns == {}
    with pytest.raises(RewardServiceError) as caught:  # a reward that reads token ids, a sample without them
        client.score([{"completion": "x"}], ["soft_overlong_punishment_reward"])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "samples[0]" in caught.value.details


def test_bad_typed_fields_and_token_ids_are_refused_before_sending(client) -> None:
    with pytest.raises(InputError, match=r"sample 0: field 'when'.*not a JSON value"):
        client.score([{"completion": "x", "fields": {"when": object()}}], ["xml_integer"])
    with pytest.raises(InputError, match=r"sample 1: completion_ids must be token ids"):
        client.score([{"completion": "x"}, {"completion": "y", "completion_ids": [1, -2]}], ["xml_integer"])
    with pytest.raises(InputError, match=r"sample 0: completion_ids must be a list"):
        client.score([{"completion": "x", "completion_ids": "1 2"}], ["xml_integer"])


def test_a_missing_prompt_is_an_empty_standard_prompt() -> None:
    from trainer_client.convert import to_sample

    plain = to_sample({"completion": "4"})
    assert plain.HasField("prompt_text") and plain.prompt_text == "" and len(plain.prompt) == 0
    # A conversation needs its turns: with no prompt the sample is standard whatever the completion's shape.
    chat = to_sample({"prompt": None, "completion": [{"role": "assistant", "content": "4"}]})
    assert chat.HasField("prompt_text") and chat.prompt_text == "" and len(chat.prompt) == 0 and chat.completion == "4"


def test_lora_eval_refuses_token_id_rewards_before_generating(client) -> None:
    from inference.eval_cli import EvalError, check_rewards

    example = {"prompt": [{"role": "user", "content": "q"}], "solution": "$4$"}
    check_rewards(client, [{"name": "accuracy_reward", "params": {}}], example)  # text only: fine
    with pytest.raises(EvalError, match="reads completion_ids"):
        check_rewards(client, [{"name": "soft_overlong_punishment_reward", "params": {}}], example)
