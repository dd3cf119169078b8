"""Reward models on a real server: three tiny random reward models built here (no download), scored over the wire
and compared with what TRL's GRPOTrainer computes in-process (its own ``_calculate_rewards``) on the same models.

- llama: a Llama classifier whose tokenizer has no pad token (TRL pads with EOS), ChatML template, one label;
- qwen2: a Qwen2 classifier with a pad token and two labels (for the label / probability params);
- bert: a BERT classifier without a chat template (conversational samples are refused for it).
"""

from __future__ import annotations

import random
import re
import shutil
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from conftest import REPO, RunningServer, start_server, stop_server
from google.protobuf import struct_pb2

from reward.v1 import reward_pb2 as pb
from reward_server.models.loading import directory_hash
from reward_server.models.synthetic import build_reward_model, german_text

KINDS = {"llama": {"kind": "llama"}, "qwen2": {"kind": "qwen2", "num_labels": 2}, "bert": {"kind": "bert"}}
KINDS["bert"] |= {"chat_template": False}
TOLERANCE = {"rel": 1e-4, "abs": 1e-5}  # float32 on the CPU; TRL pads the whole batch, the server per pass


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reward-models")
    return {name: build_reward_model(root / name, **kw) for name, kw in KINDS.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dirs) -> RunningServer:
    # Two models from flags, one from the config file (with its own batching), all on one server.
    config = f"reward_models:\n  - {{name: qwen2, model: {model_dirs['qwen2']}, device: cpu, max_batch_size: 4}}\n"
    running = start_server(
        tmp_path_factory.mktemp("rm-server"),
        *("--reward-model", f"llama={model_dirs['llama']}", "--reward-model", f"bert={model_dirs['bert']}"),
        *("--device", "cpu", "--workers", "0", "--metrics-port", "0"),
        config=config,
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def trl(tmp_path_factory, model_dirs):
    """A real GRPOTrainer with the three reward models as its reward_funcs (TRL sets their pad tokens)."""
    sys.path.insert(0, str(REPO / "tests"))
    from datasets import Dataset
    from tiny_models import build_tiny_causal_lm
    from transformers import AutoModelForSequenceClassification
    from trl import GRPOConfig, GRPOTrainer

    root = tmp_path_factory.mktemp("trl")
    args = GRPOConfig(
        output_dir=str(root / "out"),
        per_device_train_batch_size=2,
        num_generations=2,
        report_to=[],
        use_cpu=True,
        bf16=False,
    )
    funcs = [AutoModelForSequenceClassification.from_pretrained(model_dirs[name]) for name in KINDS]
    return GRPOTrainer(
        model=str(build_tiny_causal_lm(root / "policy")),
        reward_funcs=funcs,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": "x"}] * 2),
    )


def trl_rewards(trainer, prompts, completions, names=tuple(KINDS)) -> dict[str, list[float]]:
    """Per reward model: TRL's own ``_calculate_rewards`` (conversational completions as assistant turns)."""
    chat = isinstance(prompts[0], list)
    turns = [[{"role": "assistant", "content": c}] for c in completions] if chat else completions
    keep = [i for i, name in enumerate(KINDS) if name in names]
    funcs, classes = trainer.reward_funcs, trainer.reward_processing_classes
    trainer.reward_funcs = [funcs[i] for i in keep]
    trainer.reward_processing_classes = [classes[i] for i in keep]
    trainer.reward_func_names = [list(KINDS)[i] for i in keep]
    try:
        out = trainer._calculate_rewards([{"prompt": p} for p in prompts], prompts, turns, [[1]] * len(prompts))
    finally:
        trainer.reward_funcs, trainer.reward_processing_classes = funcs, classes
    return {name: out[:, j].tolist() for j, name in enumerate(names)}


def trl_copy_logits(trainer, name, prompts, completions, **truncation) -> list[list[float]]:
    """TRL's lines for a reward model, copied, with every logit kept and optional truncation (TRL has none)."""
    import copy

    import torch
    from trl.data_utils import apply_chat_template, is_conversational

    i = list(KINDS).index(name)
    model, tokenizer = trainer.reward_funcs[i], copy.deepcopy(trainer.reward_processing_classes[i])
    if is_conversational({"prompt": prompts[0]}):
        messages = [
            {"messages": [*p, {"role": "assistant", "content": c}]} for p, c in zip(prompts, completions, strict=True)
        ]
        texts = [apply_chat_template(x, tokenizer)["text"] for x in messages]
    else:
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
    if truncation:
        tokenizer.truncation_side = truncation.pop("side")
        truncation["truncation"] = True
    inputs = tokenizer(
        text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False, **truncation
    )
    with torch.inference_mode():
        return model(**inputs).logits.tolist()


def params(**values) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def score(server, samples, names=tuple(KINDS), **kw) -> dict[str, list[float]]:
    rewards = [pb.RewardSpec(name=n, params=params(**kw)) for n in names]
    response = server.stub().Score(pb.ScoreRequest(samples=samples, rewards=rewards), timeout=120)
    return {r.name: list(r.scores) for r in response.results}


_rng = random.Random(3)


def plain(n: int, words=(3, 30)) -> tuple[list[str], list[str]]:
    prompts = [f"Frage {i}: {german_text(_rng, _rng.randint(*words))}\nAntwort: " for i in range(n)]
    return prompts, [german_text(_rng, _rng.randint(*words)) for _ in range(n)]


def chats(n: int) -> tuple[list[list[dict]], list[str]]:
    prompts = []
    for i in range(n):
        turns = [{"role": "system", "content": "Antworte kurz."}] if i % 2 else []
        turns.append({"role": "user", "content": german_text(_rng, _rng.randint(3, 20))})
        if i % 3 == 0:
            turns += [{"role": "assistant", "content": "Gut."}, {"role": "user", "content": "Und weiter?"}]
        prompts.append(turns)
    return prompts, [german_text(_rng, _rng.randint(3, 25)) for _ in range(n)]


def samples_of(prompts, completions) -> list[pb.Sample]:
    out = []
    for p, c in zip(prompts, completions, strict=True):
        if isinstance(p, str):
            out.append(pb.Sample(completion=c, prompt_text=p))
        else:
            out.append(
                pb.Sample(completion=c, prompt=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in p])
            )
    return out


def test_each_model_is_listed_with_its_id_revision_device_and_dtype(server, model_dirs) -> None:
    listed = {r.name: r for r in server.stub().ListRewards(pb.ListRewardsRequest()).rewards}
    for name, path in model_dirs.items():
        info = listed[name]
        assert info.available and info.requires_model and not info.unavailable_reason
        assert (info.model_id, info.device, info.dtype) == (str(path), "cpu", "float32")
        assert info.model_revision == directory_hash(path)  # a local directory: its content hash (tested below)
        names = {p.name for p in info.params}
        assert names == {"label", "output", "normalize", "mean", "std", "max_length", "truncation_side"}
    assert len({listed[name].model_revision for name in model_dirs}) == len(model_dirs)  # three models, three hashes
    assert "loaded model" in server.log() and "for reward qwen2" in server.log()


def test_a_local_models_revision_follows_its_bytes_and_names(model_dirs, tmp_path) -> None:
    original = model_dirs["bert"]
    revision = directory_hash(original)
    assert len(revision) == 16 and int(revision, 16) >= 0
    copy = shutil.copytree(original, tmp_path / "copy")
    assert directory_hash(copy) == revision  # the content, not the place
    (copy / ".git").mkdir()
    (copy / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert directory_hash(copy) == revision  # a checkout's .git is not the model
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert directory_hash(copy) != revision
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    assert directory_hash(copy) == revision
    (copy / "config.json").rename(copy / "config-old.json")  # same bytes under another name
    assert directory_hash(copy) != revision


def test_plain_samples_score_what_trl_computes(server, trl) -> None:
    prompts, completions = plain(24)
    served = score(server, samples_of(prompts, completions))
    expected = trl_rewards(trl, prompts, completions)
    for name in KINDS:
        assert served[name] == pytest.approx(expected[name], **TOLERANCE), name
    assert len(set(served["llama"])) == 24  # random weights, yet every sample scores differently


def test_conversational_samples_score_what_trl_computes(server, trl) -> None:
    prompts, completions = chats(12)
    served = score(server, samples_of(prompts, completions), names=("llama", "qwen2"))
    expected = trl_rewards(trl, prompts, completions, names=("llama", "qwen2"))
    for name in ("llama", "qwen2"):
        assert served[name] == pytest.approx(expected[name], **TOLERANCE), name
    # The chat template matters: the same text sent as a plain prompt scores differently.
    flat = [" ".join(m["content"] for m in p) for p in prompts]
    assert score(server, samples_of(flat, completions), names=("llama",))["llama"] != served["llama"]


def test_a_model_without_chat_template_refuses_chat_samples_naming_the_sample(server) -> None:
    prompts, completions = chats(2)
    with pytest.raises(grpc.RpcError) as caught:
        score(server, samples_of(["plain: ", *prompts[1:]], completions), names=("bert",))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[1] has chat turns" in caught.value.details() and "no chat template" in caught.value.details()


@pytest.mark.parametrize("side", ["right", "left"])
def test_long_inputs_are_truncated_like_the_tokenizer_would(server, trl, side) -> None:
    prompts, completions = plain(6, words=(60, 120))
    served = score(server, samples_of(prompts, completions), max_length=40, truncation_side=side)
    for name in KINDS:
        expected = [row[0] for row in trl_copy_logits(trl, name, prompts, completions, max_length=40, side=side)]
        assert served[name] == pytest.approx(expected, **TOLERANCE), name
    untruncated = score(server, samples_of(prompts, completions), names=("llama",))["llama"]
    assert untruncated == pytest.approx(trl_rewards(trl, prompts, completions, names=("llama",))["llama"], **TOLERANCE)
    assert untruncated != served["llama"]


def test_inputs_over_the_model_limit_are_cut_there(server, trl) -> None:
    prompts, completions = plain(3, words=(500, 700))  # well over the models' 512 positions
    served = score(server, samples_of(prompts, completions), names=("llama", "bert"))
    for name in ("llama", "bert"):
        expected = [row[0] for row in trl_copy_logits(trl, name, prompts, completions, max_length=512, side="right")]
        assert served[name] == pytest.approx(expected, **TOLERANCE), name


def test_label_probability_and_normalize_params(server, trl) -> None:
    import torch

    prompts, completions = plain(8)
    logits = trl_copy_logits(trl, "qwen2", prompts, completions)
    samples = samples_of(prompts, completions)
    assert score(server, samples, ("qwen2",), label="1")["qwen2"] == pytest.approx([r[1] for r in logits], **TOLERANCE)
    probs = torch.tensor(logits).softmax(-1).tolist()
    served = score(server, samples, ("qwen2",), label="LABEL_1", output="probability")["qwen2"]
    assert served == pytest.approx([p[1] for p in probs], **TOLERANCE)
    served = score(server, samples, ("qwen2",), normalize=True, mean=0.5, std=2.0)["qwen2"]
    assert served == pytest.approx([(r[0] - 0.5) / 2.0 for r in logits], **TOLERANCE)
    sigmoid = torch.tensor(trl_copy_logits(trl, "llama", prompts, completions)).sigmoid()[:, 0].tolist()
    served = score(server, samples, ("llama",), output="probability")["llama"]
    assert served == pytest.approx(sigmoid, **TOLERANCE)  # one label: its sigmoid


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"label": "LABEL_7"}, "param 'label': 'LABEL_7' is not a label of"),
        ({"output": "rank"}, "param 'output' must be one of logit, probability"),
        ({"normalize": True, "std": 0.0}, "param 'std' must be > 0"),
        ({"max_length": 4096}, "param 'max_length' must be between 0 (the model's limit) and 512"),
        ({"truncation_side": "middle"}, "param 'truncation_side' must be right or left"),
    ],
)
def test_bad_params_are_invalid_argument_naming_the_param(server, values, needle) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        score(server, samples_of(*plain(2)), names=("qwen2",), **values)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in caught.value.details()


def test_sixteen_concurrent_callers_get_the_numbers_of_one(server) -> None:
    requests = [samples_of(*plain(8)) for _ in range(16)]
    alone = [score(server, r, names=("llama", "qwen2")) for r in requests]
    offset = len(server.log())
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda r: score(server, r, names=("llama", "qwen2")), requests))
    for one, many in zip(alone, together, strict=True):
        for name in ("llama", "qwen2"):
            assert many[name] == pytest.approx(one[name], **TOLERANCE)
    assert "Traceback" not in server.log()[offset:]


def test_metrics_per_model(server) -> None:
    score(server, samples_of(*plain(4)))
    line = next(line for line in server.log().splitlines() if "metrics on" in line)
    page = urllib.request.urlopen(line.split("metrics on ")[1].split()[0], timeout=10).read().decode()
    for name in KINDS:
        tokens = re.search(rf'reward_model_tokens_total\{{model="[^"]+@cpu",reward="{name}"\}} (\S+)', page)
        assert tokens and float(tokens.group(1)) > 0, name
        for metric in ("queue_seconds_count", "forward_seconds_count", "batch_size_count"):
            assert re.search(rf'reward_model_{metric}\{{[^}}]*reward="{name}"\}} [1-9]', page), metric
        assert re.search(rf'reward_model_queue_depth\{{[^}}]*reward="{name}"\}} 0', page)
        assert re.search(rf'reward_model_tokens_per_second\{{[^}}]*reward="{name}"\}} [1-9]', page)
