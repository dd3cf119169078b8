"""Reward models that cannot load (exit 2 naming the model and the reason), device out-of-memory handling (with a
FAKE out-of-memory error: there is no GPU here), and ``--sentiment-model`` alone enabling sentiment."""

from __future__ import annotations

import json
import math
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from conftest import run_module, start_server, stop_server
from test_reward_models import TOLERANCE, plain, samples_of, score
from test_sentiment import classify, label_of, make_samples

from reward.v1 import reward_pb2 as pb
from reward_server.models.synthetic import build_reward_model, build_sentiment_classifier

#: Installed through PYTHONPATH into the server process only. It makes the Llama classifier raise torch's
#: out-of-memory error, as a full GPU would: for any pass of more than 2 texts (the server must split the pass and
#: retry), and for any text of more than 150 tokens (even alone: the server must fail that batch, and only it).
#: While a file ``fail-passes`` sits beside it, every pass raises a device error (FAKE too): a failed model pass.
FAKE_OOM = """
import pathlib
import torch
from transformers.models.llama import modeling_llama

real_forward = modeling_llama.LlamaForSequenceClassification.forward
FAIL = pathlib.Path(__file__).with_name("fail-passes")

def fake_forward(self, input_ids=None, attention_mask=None, **kwargs):
    if FAIL.exists():
        raise RuntimeError("CUDA error: device-side assert triggered (FAKE: raised by the test's sitecustomize)")
    if input_ids.shape[0] > 2 or int(attention_mask.sum(dim=1).max()) > 150:
        raise torch.OutOfMemoryError("CUDA out of memory (FAKE: raised by the test's sitecustomize)")
    return real_forward(self, input_ids=input_ids, attention_mask=attention_mask, **kwargs)

modeling_llama.LlamaForSequenceClassification.forward = fake_forward
"""


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rm-errors")
    out = {"llama": build_reward_model(root / "llama", "llama")}
    out["sentiment"] = build_sentiment_classifier(root / "sentiment")
    # A causal LM checkpoint: AutoModelForSequenceClassification would load it with a random, untrained head.
    causal = build_reward_model(root / "causal", "qwen2")
    config = json.loads((causal / "config.json").read_text())
    (causal / "config.json").write_text(json.dumps(config | {"architectures": ["Qwen2ForCausalLM"]}))
    weights = causal / "model.safetensors"
    from safetensors.torch import load_file, save_file

    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("score.")}, weights)
    out["causal"] = causal
    no_labels = build_reward_model(root / "no-labels", "llama", num_labels=0)
    out["no_labels"] = no_labels
    return out


@pytest.fixture(scope="module")
def oom_server(tmp_path_factory, dirs):
    tmp = tmp_path_factory.mktemp("oom")
    (tmp / "hooks").mkdir()
    (tmp / "hooks" / "sitecustomize.py").write_text(textwrap.dedent(FAKE_OOM))
    running = start_server(
        tmp,
        *("--reward-model", f"rm={dirs['llama']}", "--sentiment-model", str(dirs["sentiment"])),
        *("--device", "cpu", "--workers", "0"),
        env={"PYTHONPATH": str(tmp / "hooks")},
    )
    running.hooks = tmp / "hooks"
    yield running
    stop_server(running)


def test_a_failed_model_pass_is_unavailable_per_sample_and_the_other_rewards_score(oom_server) -> None:
    """A pass that fails (not for memory) gives each of its samples NaN with a NOTE_KIND_UNAVAILABLE note naming the
    model and the error; the request's CPU reward still scores, and the next request (the device well again) works."""
    request = pb.ScoreRequest(
        samples=samples_of(*plain(2, words=(3, 8))),
        rewards=[pb.RewardSpec(name="rm"), pb.RewardSpec(name="xml_tag_count")],
    )
    fail = oom_server.hooks / "fail-passes"
    fail.touch()
    try:
        rm, tags = oom_server.stub().Score(request, timeout=120).results
    finally:
        fail.unlink()
    assert all(math.isnan(s) for s in rm.scores) and rm.counts.unavailable == 2 and rm.counts.scored == 0
    assert [n.sample_index for n in rm.notes] == [0, 1]
    assert all(n.kind == pb.NOTE_KIND_UNAVAILABLE for n in rm.notes)
    assert f"model {oom_server_model(oom_server)} failed on a batch of 2 texts" in rm.notes[0].reason
    assert "RuntimeError: CUDA error: device-side assert triggered (FAKE" in rm.notes[0].reason
    assert tags.counts.scored == 2 and not tags.notes
    again = oom_server.stub().Score(request, timeout=120).results[0]
    assert again.counts.scored == 2 and not again.notes


def test_a_fake_out_of_memory_pass_is_split_and_retried(oom_server, dirs) -> None:
    prompts, completions = plain(8, words=(3, 10))  # 8 short texts: one pass, over the fake's 2-text limit
    served = score(oom_server, samples_of(prompts, completions), names=("rm",))["rm"]
    # The same texts one request at a time, each a pass of one (never split): the same numbers.
    alone = [
        score(oom_server, samples_of([p], [c]), names=("rm",))["rm"][0]
        for p, c in zip(prompts, completions, strict=True)
    ]
    assert served == pytest.approx(alone, **TOLERANCE)


def test_a_text_too_big_for_memory_fails_its_request_with_resource_exhausted(oom_server) -> None:
    long_ones = samples_of(*plain(2, words=(150, 200)))  # over the fake's 150 tokens, even alone
    with pytest.raises(grpc.RpcError) as caught:
        score(oom_server, long_ones, names=("rm",))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = caught.value.details()
    assert f"model {oom_server_model(oom_server)} on cpu ran out of memory on a batch of 2 texts" in details
    assert "even on one text of" in details
    # The server lives on, and the next requests (several at once) work.
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: score(oom_server, samples_of(*plain(2, (3, 8))), ("rm",)), range(4)))
    assert all(len(r["rm"]) == 2 for r in results) and oom_server.process.poll() is None
    assert "FAKE" in oom_server.log()


def oom_server_model(server) -> str:
    return next(r.model_id for r in server.stub().ListRewards(pb.ListRewardsRequest()).rewards if r.name == "rm")


def test_sentiment_model_alone_enables_sentiment(oom_server, dirs) -> None:
    info = next(
        r for r in oom_server.stub().ListRewards(pb.ListRewardsRequest()).rewards if r.name == "sentiment_match"
    )
    assert info.available and info.model_id == str(dirs["sentiment"])
    samples = make_samples(7, 8)
    request = pb.ScoreRequest(samples=samples, rewards=[pb.RewardSpec(name="sentiment_match")])
    result = oom_server.stub().Score(request, timeout=60).results[0]
    # The labels the transformers pipeline gives the same model in this process: 1 where they match.
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(dirs["sentiment"]), device="cpu")
    labels = [label_of(c) for c in classify(pipe, [s.completion for s in samples])]
    references = [label_of(c) for c in classify(pipe, [s.fields["answer"] for s in samples])]
    expected = [1.0 if c == r else 0.0 for c, r in zip(labels, references, strict=True)]
    assert set(expected) == {0.0, 1.0}  # both outcomes, so a constant cannot pass
    assert list(result.scores) == expected and not result.notes


@pytest.mark.parametrize(
    ("model", "needles"),
    [
        ("missing", ["no such directory"]),
        ("causal", ["not a sequence classifier", "Qwen2ForCausalLM", "score.weight"]),
        ("no_labels", ["the model has no labels (num_labels=0)"]),
        ("hub", ["OSError"]),  # HF_HUB_OFFLINE: the hub cannot be reached, as on a machine without network
    ],
)
def test_a_model_that_does_not_load_refuses_startup_with_exit_2(tmp_path, dirs, model, needles) -> None:
    path = {"missing": str(tmp_path / "nothing-here"), "hub": "no-such-org/no-such-reward-model"}.get(model)
    path = path or str(dirs[model])
    result = run_module(
        "reward_server",
        "--port",
        "0",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--reward-model",
        f"judge={path}",
        timeout=120,
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert f"cannot load model '{path}' for reward judge on cpu" in result.stderr
    assert all(needle in result.stderr for needle in needles), result.stderr
    assert "listening on" not in result.stdout


@pytest.mark.parametrize(
    ("args", "config", "needle"),
    [
        (["--reward-model", "judge"], "", "--reward-model takes NAME=ID_OR_DIR"),
        (["--reward-model", "xml_correctness=./x"], "", "'xml_correctness' is already a reward's name"),
        (["--reward-model", "rm=./a"], "reward_models: [{name: rm, model: ./b}]\n", "reward model rm given twice"),
        ([], "reward_models: [{name: rm, model: ./b, dtype: fp8}]\n", "reward_models[0].dtype must be one of"),
        ([], "reward_models: [{name: rm, model: ./b, batch: 3}]\n", "reward_models[0]: unknown key 'batch'"),
        (["--sentiment-model", "./s"], "enable_sentiment: false\n", "but enable_sentiment is false"),
    ],
)
def test_bad_reward_model_settings_exit_2_naming_them(tmp_path, args, config, needle) -> None:
    extra = []
    if config:
        (tmp_path / "c.yaml").write_text(config)
        extra = ["--config", str(tmp_path / "c.yaml")]
    result = run_module("reward_server", "--port", "0", "--workers", "0", *extra, *args, timeout=120)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr, result.stderr
