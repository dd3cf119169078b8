"""sentiment_match on a real server with a tiny random-weight BERT classifier built here (no download).

Every expected score comes from the transformers pipeline run in this process on the same saved
model, as the seed ran it.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import grpc
import pytest
from conftest import RunningServer, probes_inside_calls, start_server, stop_server
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reward.v1 import reward_pb2 as pb
from reward_server.models.synthetic import SENTIMENT_LABELS, build_sentiment_classifier, german_text

SERVER_FLAGS = ("--enable-sentiment", "--device", "cpu", "--workers", "0", "--log-level", "DEBUG")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sentiment_classifier(tmp_path_factory.mktemp("model") / "tiny-sentiment")


@pytest.fixture(scope="module")
def sentiment_server(tmp_path_factory, model_dir):
    running = start_server(tmp_path_factory.mktemp("sentiment"), *SERVER_FLAGS, "--sentiment-model", str(model_dir))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def pipe(model_dir):
    from transformers import pipeline

    return pipeline("text-classification", model=str(model_dir), device="cpu")


def classify(pipe, texts: list[str]) -> list[dict[str, float]]:
    """Label → probability per text, as the seed's pipeline computes it (truncated to 512 tokens)."""
    return [{d["label"]: d["score"] for d in out} for out in pipe(texts, truncation=True, top_k=None)]


def label_of(probs: dict[str, float]) -> str:
    return max(probs, key=probs.__getitem__)


def params(**values) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def score(server: RunningServer, samples, name: str = "sentiment_match", **kw) -> list[float]:
    request = pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name=name, params=params(**kw))])
    return list(server.stub().Score(request, timeout=120).results[0].scores)


def make_samples(seed: int, n: int, words: tuple[int, int] = (3, 40), field: str = "answer") -> list[pb.Sample]:
    rng = random.Random(seed)
    return [
        pb.Sample(
            completion=german_text(rng, rng.randint(*words)), fields={field: german_text(rng, rng.randint(*words))}
        )
        for _ in range(n)
    ]


def new_log(server: RunningServer, offset: int) -> str:
    return server.log()[offset:]


def test_list_rewards_shows_the_model_and_device(sentiment_server, model_dir) -> None:
    listed = {r.name: r for r in sentiment_server.stub().ListRewards(pb.ListRewardsRequest()).rewards}
    info = listed["sentiment_match"]
    assert info.requires_model and info.available and not info.unavailable_reason
    assert (info.model_id, info.device) == (str(model_dir), "cpu")
    assert list(info.aliases) == ["sentiment_match_reward_func"] and list(info.fields) == ["answer"]
    assert {p.name for p in info.params} == {"reference_field", "value", "soft"}
    assert "loaded model" in sentiment_server.log() and ", ".join(SENTIMENT_LABELS) in sentiment_server.log()


def test_labels_equal_the_pipeline_for_every_sample(sentiment_server, pipe) -> None:
    samples = make_samples(1, 40)
    completions = classify(pipe, [s.completion for s in samples])
    references = classify(pipe, [s.fields["answer"] for s in samples])
    expected = [2.5 if label_of(c) == label_of(r) else 0.0 for c, r in zip(completions, references, strict=True)]
    # The test means something only if the tiny model gives different labels and both outcomes occur.
    assert len({label_of(c) for c in completions}) == 3 and {0.0, 2.5} == set(expected)
    assert score(sentiment_server, samples, value=2.5) == expected
    assert score(sentiment_server, samples, "sentiment_match_reward_func", value=2.5) == expected


def test_each_sample_uses_its_own_reference_field(sentiment_server, pipe) -> None:
    samples = make_samples(2, 12, field="gold")
    completions = classify(pipe, [s.completion for s in samples])
    references = classify(pipe, [s.fields["gold"] for s in samples])
    expected = [1.0 if label_of(c) == label_of(r) else 0.0 for c, r in zip(completions, references, strict=True)]
    assert len({label_of(r) for r in references}) > 1
    assert score(sentiment_server, samples, reference_field="gold") == expected


def test_soft_scores_equal_the_pipeline_probabilities(sentiment_server, pipe) -> None:
    samples = make_samples(3, 30)
    completions = classify(pipe, [s.completion for s in samples])
    references = classify(pipe, [s.fields["answer"] for s in samples])
    expected = [0.5 * c[label_of(r)] for c, r in zip(completions, references, strict=True)]
    assert score(sentiment_server, samples, soft=True, value=0.5) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_texts_over_512_tokens_are_truncated_like_the_pipeline(sentiment_server, pipe) -> None:
    samples = make_samples(4, 6, words=(400, 1500))
    lengths = [len(pipe.tokenizer(s.completion)["input_ids"]) for s in samples]
    assert min(lengths) > 512
    completions = classify(pipe, [s.completion for s in samples])
    references = classify(pipe, [s.fields["answer"] for s in samples])
    expected = [c[label_of(r)] for c, r in zip(completions, references, strict=True)]
    assert score(sentiment_server, samples, soft=True) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    hard = [1.0 if label_of(c) == label_of(r) else 0.0 for c, r in zip(completions, references, strict=True)]
    assert score(sentiment_server, samples) == hard


def test_references_are_classified_once_then_served_from_the_cache(sentiment_server, pipe) -> None:
    # GRPO-like: 4 prompts × 4 completions, each group sharing its prompt's reference.
    rng = random.Random(5)
    references = [german_text(rng, 25) for _ in range(4)]
    first = [pb.Sample(completion=german_text(rng, 12), fields={"answer": r}) for r in references for _ in range(4)]
    second = [pb.Sample(completion=german_text(rng, 12), fields={"answer": r}) for r in references for _ in range(4)]
    offset = len(sentiment_server.log())
    score(sentiment_server, first)
    assert re.search(
        r"call=\d+ texts=32 cache_hits=0 cache_misses=4 joined=0 new=20", new_log(sentiment_server, offset)
    )
    offset = len(sentiment_server.log())
    scores = score(sentiment_server, second)
    # Only the 16 new completions reach the model; the 4 references come from the cache.
    assert re.search(
        r"call=\d+ texts=32 cache_hits=4 cache_misses=0 joined=0 new=16", new_log(sentiment_server, offset)
    )
    probs = classify(pipe, [s.completion for s in second] + references)
    ref_labels = [label_of(p) for p in probs[16:]]
    assert scores == [1.0 if label_of(probs[i]) == ref_labels[i // 4] else 0.0 for i in range(16)]


def test_health_and_cpu_rewards_answer_while_the_model_works(sentiment_server) -> None:
    samples = make_samples(6, 2000, words=(150, 300))
    request = pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="sentiment_match")])
    offset = len(sentiment_server.log())
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(sentiment_server.address))
    stub = sentiment_server.stub()
    cpu_request = pb.ScoreRequest(
        samples=[pb.Sample(completion="<answer>\n42\n</answer>", fields={"answer": "42"})],
        rewards=[pb.RewardSpec(name="xml_correctness")],
    )

    def probe() -> bool:
        reply = health.Check(health_pb2.HealthCheckRequest(service="reward.v1.RewardService"), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert list(stub.Score(cpu_request, timeout=10).results[0].scores) == [2.0]
        # Counted only when the model was provably busy: a batch had run while the big call was in flight.
        return "batch size=" in new_log(sentiment_server, offset)

    inside, responses = probes_inside_calls(lambda: stub.Score(request, timeout=300), probe, wanted=3)
    assert inside >= 3, f"only {inside} probes answered while one of {len(responses)} sentiment requests ran"
    assert all(len(r.results[0].scores) == 2000 for r in responses)


def test_not_enabled_answers_failed_precondition_naming_the_flag(stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Score(pb.ScoreRequest(samples=make_samples(7, 1), rewards=[pb.RewardSpec(name="sentiment_match")]))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--enable-sentiment" in caught.value.details() and "--sentiment-model" in caught.value.details()
    info = next(r for r in stub.ListRewards(pb.ListRewardsRequest()).rewards if r.name == "sentiment_match")
    assert not info.available and "--enable-sentiment" in info.unavailable_reason


@pytest.mark.parametrize(
    ("model", "device", "needles"),
    [
        ("missing", "cpu", ["no such directory"]),
        ("broken", "cpu", ["config.json"]),
        ("tiny", "tpu:7", ["'tpu:7' is not a torch device"]),
    ],
)
def test_a_model_that_cannot_load_fails_startup_naming_it(tmp_path, model_dir, model, device, needles) -> None:
    path = {"missing": tmp_path / "no-model-here", "broken": tmp_path / "broken", "tiny": model_dir}[model]
    if model == "broken":
        path.mkdir()
        (path / "config.json").write_text("{ not json")
    with pytest.raises(RuntimeError) as caught:
        start_server(
            tmp_path, "--enable-sentiment", "--device", device, "--sentiment-model", str(path), "--workers", "0"
        )
    message = str(caught.value)
    assert "server exited with 2" in message  # a model that does not load refuses the configuration
    assert f"cannot load model '{path}' for reward sentiment_match" in message
    assert all(needle in message for needle in needles), message
    assert "listening on" not in message
