"""Limits and time budgets: refused with RESOURCE_EXHAUSTED, cut off to NaN, server keeps serving."""

from __future__ import annotations

import math

import grpc
import pytest
from conftest import start_server, stop_server

from reward.v1 import reward_pb2 as pb

# math-verify simplifies this difference for minutes: a real pathological input.
HANGS = ("\\boxed{(x+1)^{2999}*(x+2)}", "(x+1)^{3000}")


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    running = start_server(
        tmp_path_factory.mktemp("strict"),
        config="max_samples_per_request: 5\nmax_message_bytes: 200000\nmath_timeout_s: 1.5\nworkers: 1\n",
    )
    yield running
    stop_server(running)


def test_too_many_samples_is_resource_exhausted(strict_server) -> None:
    samples = [pb.Sample(completion="x", fields={"answer": "1"})] * 6
    with pytest.raises(grpc.RpcError) as caught:
        strict_server.stub().Score(pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="xml_integer")]))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "6 samples" in caught.value.details() and "limit is 5" in caught.value.details()


def test_oversized_message_is_resource_exhausted(strict_server) -> None:
    samples = [pb.Sample(completion="x" * 300_000)]
    with pytest.raises(grpc.RpcError) as caught:
        strict_server.stub().Score(pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="xml_integer")]))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_math_sample_over_its_time_limit_scores_nan_and_the_server_keeps_serving(strict_server) -> None:
    completion, reference = HANGS
    samples = [
        pb.Sample(completion=completion, fields={"answer": reference}),
        pb.Sample(completion="\\boxed{\\frac{1}{2}}", fields={"answer": "0.5"}),
    ]
    stub = strict_server.stub()
    response = stub.Score(
        pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="math_equivalence")]), timeout=60
    )
    scores = list(response.results[0].scores)
    assert math.isnan(scores[0]) and scores[1] == 1.0
    assert [(n.sample_index, "timed out" in n.reason) for n in response.results[0].notes] == [(0, True)]
    # A NaN-only sample has a NaN total; a sample with any score sums the rest.
    assert math.isnan(response.total[0]) and response.total[1] == 1.0
    again = stub.Score(pb.ScoreRequest(samples=samples[1:], rewards=[pb.RewardSpec(name="math_equivalence")]))
    assert list(again.results[0].scores) == [1.0]
    assert strict_server.process.poll() is None


def test_total_skips_nan_and_weights_the_rest(strict_server) -> None:
    completion, reference = HANGS
    samples = [pb.Sample(completion=completion, fields={"answer": reference})]
    response = strict_server.stub().Score(
        pb.ScoreRequest(
            samples=samples,
            rewards=[
                pb.RewardSpec(name="math_equivalence", weight=10.0),
                pb.RewardSpec(name="think_boxed_format", weight=3.0),
                pb.RewardSpec(name="format_approximate", weight=0.5),
            ],
        ),
        timeout=60,
    )
    assert math.isnan(response.results[0].scores[0])
    assert list(response.total) == [3.0 * 0.0 + 0.5 * -3.0]
