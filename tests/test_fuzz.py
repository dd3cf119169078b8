"""Bad input from every direction: the server answers OK or a specific code, never UNKNOWN/INTERNAL."""

from __future__ import annotations

import contextlib
import math
import socket
import time

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reward.v1 import reward_pb2 as pb

EXPECTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
NAMES = [
    "xml_correctness",
    "xml_tag_count",
    "think_boxed_format",
    "format_approximate",
    "answer_check",
    "number_check",
    "tfidf_similarity",
    "solution_levenshtein",
    "sentiment_match",
    "math_equivalence",
]
FIELD_NAMES = st.sampled_from(["answer", "solution", "", "ä", "x" * 50])
text = st.text(max_size=300)
param_value = st.one_of(
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    text,
    st.none(),
    st.lists(st.integers(), max_size=3),
)
param_names = st.one_of(st.sampled_from(["value", "reference_field", "language", "soft", "answer_tag", "hit"]), text)


@st.composite
def requests(draw) -> pb.ScoreRequest:
    samples = [
        pb.Sample(
            prompt=[pb.ChatMessage(role=draw(text), content=draw(text)) for _ in range(draw(st.integers(0, 2)))],
            completion=draw(text),
            fields=draw(st.dictionaries(FIELD_NAMES, text, max_size=3)),
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    rewards = []
    for _ in range(draw(st.integers(0, 4))):
        spec = pb.RewardSpec(name=draw(st.one_of(st.sampled_from(NAMES), text)))
        if draw(st.booleans()):
            spec.weight = draw(st.floats(allow_nan=True, allow_infinity=True))
        params = draw(st.dictionaries(param_names, param_value, max_size=3))
        if params:
            struct = struct_pb2.Struct()
            struct.update(params)
            spec.params.CopyFrom(struct)
        rewards.append(spec)
    return pb.ScoreRequest(samples=samples, rewards=rewards, request_id=draw(text))


def call(stub, request) -> grpc.StatusCode:
    try:
        response = stub.Score(request, timeout=60)
    except grpc.RpcError as exc:
        assert exc.code() in EXPECTED, (exc.code(), exc.details())
        assert exc.details(), "an error without a message"
        return exc.code()
    assert len(response.total) == len(request.samples)
    assert all(len(r.scores) == len(request.samples) for r in response.results)
    return grpc.StatusCode.OK


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_random_requests_get_ok_or_a_specific_code(stub, request) -> None:
    call(stub, request)


def test_empty_and_huge_requests(stub) -> None:
    assert call(stub, pb.ScoreRequest()) == grpc.StatusCode.INVALID_ARGUMENT
    assert call(stub, pb.ScoreRequest(rewards=[pb.RewardSpec(name="xml_integer")])) == grpc.StatusCode.OK
    big = pb.ScoreRequest(samples=[pb.Sample(completion="ü" * 900_000)], rewards=[pb.RewardSpec(name="xml_integer")])
    assert call(stub, big) == grpc.StatusCode.OK
    huge = pb.ScoreRequest(samples=[pb.Sample(completion="ü" * 1_000_001)], rewards=[pb.RewardSpec(name="xml_integer")])
    with pytest.raises(grpc.RpcError) as caught:
        stub.Score(huge, timeout=60)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "samples[0].completion has 1000001 characters; the limit is 1000000" in caught.value.details()
    weights = [math.nan, math.inf, -math.inf, 1e308, -0.0]
    for w in weights:
        call(
            stub,
            pb.ScoreRequest(samples=[pb.Sample(completion="x")], rewards=[pb.RewardSpec(name="xml_integer", weight=w)]),
        )


def test_garbage_bytes_and_half_open_connections_do_not_hurt(server, stub) -> None:
    host, port = server.address.rsplit(":", 1)
    half_open = socket.create_connection((host, int(port)))
    half_open.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # a preface, then silence
    for payload in (b"\x00" * 64, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 8):
        with socket.create_connection((host, int(port))) as garbage:
            garbage.sendall(payload)
            garbage.settimeout(2)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                garbage.recv(1024)
    time.sleep(0.2)
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert (
        call(
            stub,
            pb.ScoreRequest(
                samples=[pb.Sample(completion="<answer>1</answer>")], rewards=[pb.RewardSpec(name="xml_integer")]
            ),
        )
        == grpc.StatusCode.OK
    )
    half_open.close()
    assert server.process.poll() is None


def test_undecodable_bytes_are_invalid_argument(server) -> None:
    channel = grpc.insecure_channel(server.address)
    raw = channel.unary_unary("/reward.v1.RewardService/Score", request_serializer=None, response_deserializer=None)
    valid = pb.ScoreRequest(samples=[pb.Sample(completion="abc")], rewards=[pb.RewardSpec(name="xml_integer")])
    data = valid.SerializeToString()
    broken = data.replace(b"abc", b"\xff\xfe\xfd")  # invalid UTF-8 inside a proto3 string field
    for payload in (broken, b"\xff\xff\xff\xff"):
        with pytest.raises(grpc.RpcError) as caught:
            raw(payload, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert "decode" in caught.value.details()
