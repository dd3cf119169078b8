"""Live tests: the real server process, called over loopback through gRPC."""

from __future__ import annotations

import math

import grpc
import pytest
from conftest import probes_inside_calls
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

import reward_server.rewards  # noqa: F401 - registers the catalogue for in-process reference values
from reward.v1 import reward_pb2 as pb
from reward_server.code import rewards as code_rewards
from reward_server.registry import REGISTRY, Batch

REASONED = "<reasoning>\nSechs mal sieben\n</reasoning>\n<answer>\n42\n</answer>\n"
THINK = "<think>\nDer Strand ist schön\n</think>\nAlso \\boxed{42}"
MARKED = "<start_working_out>6*7<end_working_out><SOLUTION>42</SOLUTION>"
FIELDS = {"answer": "42", "solution": "Also \\boxed{42}"}
SAMPLES = [
    pb.Sample(prompt=[pb.ChatMessage(role="user", content="6*7?")], completion=c, fields=FIELDS)
    for c in (REASONED, THINK, MARKED, "", "Ünïcödé ✓ <answer>41</answer>")
]
# Token-id rewards are checked with their ids in test_rewards_served.py, code rewards with their problems in
# test_code_rewards.py (these samples carry neither).
CPU_REWARDS = [
    r.name
    for r in REGISTRY
    if not r.requires_model and "completion_ids" not in r.reads and r.name not in code_rewards.CODE_REWARDS
]


def params(**values) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def in_process(name: str, samples=SAMPLES, **kw) -> list[float]:
    reward = REGISTRY.get(name)
    merged = reward.validate_params(kw)
    columns = {p.name: [s.fields[merged[p.name]] for s in samples] for p in reward.params if p.is_field}
    return reward.score_batch(Batch([s.completion for s in samples], columns), **merged).scores


def test_list_rewards_describes_every_reward(stub) -> None:
    listed = {r.name: r for r in stub.ListRewards(pb.ListRewardsRequest()).rewards}
    assert set(listed) == {r.name for r in REGISTRY}
    assert {"xml_correctness", "tfidf_similarity", "math_equivalence", "sentiment_match"} <= set(listed)
    correctness = listed["xml_correctness"]
    assert list(correctness.aliases) == ["correctness_reward_func"]
    assert list(correctness.fields) == ["answer"]
    value = next(p for p in correctness.params if p.name == "value")
    assert value.type == pb.PARAM_TYPE_NUMBER and value.default_value.number_value == 2.0
    assert correctness.description and not correctness.requires_model and correctness.available
    assert list(listed["solution_levenshtein"].fields) == ["solution"]
    prefilled = next(p for p in listed["think_boxed_format"].params if p.name == "think_prefilled")
    assert prefilled.type == pb.PARAM_TYPE_BOOL and prefilled.default_value.bool_value is False
    sentiment = listed["sentiment_match"]
    assert sentiment.requires_model and not sentiment.available and sentiment.unavailable_reason


def test_every_cpu_reward_scores_like_the_function(stub) -> None:
    response = stub.Score(pb.ScoreRequest(samples=SAMPLES, rewards=[pb.RewardSpec(name=n) for n in CPU_REWARDS]))
    assert [r.name for r in response.results] == CPU_REWARDS
    for result in response.results:
        assert list(result.scores) == pytest.approx(in_process(result.name)), result.name
    by_name = {r.name: list(r.scores) for r in response.results}
    # A few values straight from the spec, for the first three samples.
    assert by_name["xml_correctness"][:3] == [2.0, 0.0, 0.0]
    assert by_name["xml_strict_format"][0] == 0.5
    assert by_name["boxed_accuracy"][:3] == [0.0, 1.0, 0.0]
    assert by_name["think_boxed_format"][:2] == [0.0, 1.0]
    assert by_name["format_exact"][2] == 3.0 and by_name["answer_check"][2] == 5.0
    assert by_name["math_equivalence"][:3] == [1.0, 1.0, 0.0]
    assert response.server_version and response.request_id


def test_aliases_answer_like_their_reward(stub) -> None:
    for reward in REGISTRY:
        if reward.requires_model:
            continue
        for alias in reward.aliases:
            response = stub.Score(pb.ScoreRequest(samples=SAMPLES, rewards=[pb.RewardSpec(name=alias)]))
            assert response.results[0].name == reward.name
            assert list(response.results[0].scores) == pytest.approx(in_process(reward.name))


def test_params_and_weights_make_the_total(stub) -> None:
    german = "<Begründung>\nweil\n</Begründung>\n<Antwort>\n42\n</Antwort>"
    samples = [pb.Sample(completion=german, fields={"answer": "42"}), pb.Sample(completion="", fields={"answer": "1"})]
    tags = {"reasoning_tag": "Begründung", "answer_tag": "Antwort"}
    response = stub.Score(
        pb.ScoreRequest(
            samples=samples,
            rewards=[
                pb.RewardSpec(name="correctness_reward_func", weight=0.5, params=params(**tags)),
                pb.RewardSpec(name="xml_strict_format", params=params(value=3.0, **tags)),
                pb.RewardSpec(name="format_approximate", weight=-2.0),
            ],
        )
    )
    assert [list(r.scores) for r in response.results] == [[2.0, 0.0], [3.0, 0.0], [-3.0, -3.0]]
    assert [r.weight for r in response.results] == [0.5, 1.0, -2.0]
    assert list(response.total) == [0.5 * 2.0 + 3.0 + 6.0, 6.0]


def test_several_prompts_in_one_tfidf_request(stub) -> None:
    samples = [
        pb.Sample(completion="Der Strand ist schön und warm", fields={"answer": "Der Strand ist schön"}),
        pb.Sample(completion="Die Berge sind hoch", fields={"answer": "Die Berge sind hoch"}),
        pb.Sample(completion="Der Strand", fields={"answer": "Der Strand ist schön"}),
    ]
    scores = list(
        stub.Score(pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="tfidf_similarity")])).results[0].scores
    )
    assert scores[1] == pytest.approx(1.0)
    alone = [in_process("tfidf_similarity", [samples[0], samples[2]])]
    assert [scores[0], scores[2]] == pytest.approx(alone[0])


@pytest.mark.parametrize(
    ("rewards", "samples", "needle"),
    [
        ([pb.RewardSpec(name="xml_corectness")], SAMPLES, "closest known names: 'xml_correctness'"),
        ([], SAMPLES, "rewards is empty"),
        (
            [pb.RewardSpec(name="xml_correctness")],
            [pb.Sample(completion="x"), *SAMPLES],
            "samples[0] has no field 'answer'",
        ),
        (
            [pb.RewardSpec(name="xml_correctness", params=params(reference_field="gold"))],
            SAMPLES,
            "samples[0] has no field 'gold'",
        ),
        ([pb.RewardSpec(name="xml_correctness", params=params(valu=1))], SAMPLES, "unknown param 'valu'"),
        ([pb.RewardSpec(name="xml_correctness", params=params(value="2"))], SAMPLES, "param 'value' must be a number"),
        ([pb.RewardSpec(name="think_boxed_format", params=params(think_prefilled=1))], SAMPLES, "must be a bool"),
        (
            [pb.RewardSpec(name="xml_correctness", params=params(value=[1, 2]))],
            SAMPLES,
            "param 'value' must be a number",
        ),
        ([pb.RewardSpec(name="xml_correctness", params=params(value=math.inf))], SAMPLES, "must be finite"),
        ([pb.RewardSpec(name="xml_integer", weight=math.nan)], SAMPLES, "weight must be finite"),
        ([pb.RewardSpec(name="xml_integer", weight=-math.inf)], SAMPLES, "weight must be finite"),
        ([pb.RewardSpec(name="tfidf_similarity", params=params(language="klingon"))], SAMPLES, "'klingon'"),
    ],
)
def test_bad_requests_are_invalid_argument(stub, rewards, samples, needle) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Score(pb.ScoreRequest(samples=samples, rewards=rewards))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in caught.value.details()


def test_model_reward_not_enabled_is_failed_precondition(stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Score(pb.ScoreRequest(samples=SAMPLES, rewards=[pb.RewardSpec(name="sentiment_match_reward_func")]))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "sentiment_match" in caught.value.details()


def test_health_serving_overall_and_for_the_service(server) -> None:
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
    for service in ("", "reward.v1.RewardService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_answers_promptly_during_a_10k_sample_request(server, stub) -> None:
    samples = [pb.Sample(completion=REASONED * 3 + str(i), fields=FIELDS) for i in range(10_000)]
    names = ["xml_correctness", "xml_tag_count", "tfidf_similarity", "solution_levenshtein", "format_approximate"]
    request = pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name=n) for n in names])
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))

    def probe() -> bool:
        reply = health.Check(health_pb2.HealthCheckRequest(service="reward.v1.RewardService"), timeout=1.0)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        return True

    inside, responses = probes_inside_calls(lambda: stub.Score(request, timeout=300), probe)
    assert inside >= 5, f"only {inside} health probes fell inside one of {len(responses)} big requests"
    assert responses and all(len(r.scores) == 10_000 for resp in responses for r in resp.results)
