"""Plain TRL reward functions served by a real server from files the test writes (``--rewards-from``).

The service's scores are compared with TRL's own ``GRPOTrainer._calculate_rewards`` calling the same functions
in-process (a real trainer on a tiny policy built here, the params bound with ``functools.partial`` as a training
script would), for a standard and a conversational batch, with typed fields (an int column, a dict column),
params, None and an async function; broken functions give that batch's error as NaN with a note, never a silent
0, and the worker keeps serving.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import shutil

import grpc
import numpy as np
import psutil
import pytest
from conftest import REPO, start_server, stop_server
from google.protobuf import struct_pb2

from reward.v1 import reward_pb2
from reward.values import to_value
from reward_server.registry import Batch
from reward_server.trl_functions import Unservable, splittable, trl_reward

EXAMPLE = REPO / "examples" / "trl_rewards.py"
TRL_NAMES = [
    "answer_tag_format",
    "exact_answer",
    "length_penalty",
    "difficulty_bonus",
    "passed_cases_reward",
    "prompt_echo_penalty",
    "judge_reward",
    "token_count",
]
FAULTY = """
import time

def raises(completions, **kwargs):
    return [1 / 0 for _ in completions]

def wrong_length(completions, **kwargs):
    return [1.0]

def strings(completions, **kwargs):
    return ["0.5" for _ in completions]

def not_a_list(completions, **kwargs):
    return 1.0

def hangs(completions, **kwargs):
    time.sleep(60)
    return [1.0 for _ in completions]

async def hangs_async(completions, **kwargs):
    import asyncio
    await asyncio.sleep(60)

def helper(text):  # not a reward: takes neither completions nor prompts
    return text
"""
PROMPTS = ["What is 2+2?", "Name a prime.", "Say hi."]
COMPLETIONS = ["<answer>4</answer>", "I think <answer>7</answer>.", "Say hi. hi"]
IDS = [[1, 2, 3], [4, 5], [6]]
COLUMNS = {
    "solution": ["4", "5", "0"],  # text (Sample.fields)
    "difficulty": [3, 1, 2],  # an int column (typed_fields)
    "verification_info": [  # a dict column (typed_fields)
        {"test_cases": [{"output": "4"}, {"output": "5"}]},
        {"test_cases": [{"output": "7"}]},
        {"test_cases": []},
    ],
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugins")
    shutil.copy(EXAMPLE, root / "my_rewards.py")
    (root / "faulty.py").write_text(FAULTY)
    return root


@pytest.fixture(scope="module")
def server(sources):
    running = start_server(
        sources,
        "--rewards-from",
        str(sources / "my_rewards.py"),
        "--rewards-from",
        str(sources / "faulty.py"),
        config="workers: 1\nsample_timeout_s: 0.3\n",
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def local(sources):
    """The same file imported in-process, as a training script would import it."""
    spec = importlib.util.spec_from_file_location("local_rewards", sources / "my_rewards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, local):
    """A real GRPOTrainer (tiny random policy, CPU) whose ``_calculate_rewards`` calls the functions as in training."""
    from datasets import Dataset
    from tiny_models import build_tiny_causal_lm
    from trl import GRPOConfig, GRPOTrainer

    root = tmp_path_factory.mktemp("trl")
    args = GRPOConfig(
        output_dir=str(root / "out"), per_device_train_batch_size=3, num_generations=3, report_to=[], use_cpu=True
    )
    return GRPOTrainer(
        model=str(build_tiny_causal_lm(root / "policy")),
        reward_funcs=[getattr(local, name) for name in TRL_NAMES],  # judge_reward is async: TRL starts its loop
        args=args,
        train_dataset=Dataset.from_list([{"prompt": "x"}] * 3),
    )


def trl_scores(trainer, fn, prompts, completions) -> tuple[list[float], dict[str, list[str]]]:
    """TRL's ``_calculate_rewards`` with ``fn`` as the only reward: (its scores, the extra columns it logged)."""
    inputs = [{"prompt": p, **{k: v[i] for k, v in COLUMNS.items()}} for i, p in enumerate(prompts)]
    saved = trainer.reward_funcs, trainer.reward_processing_classes, trainer.reward_func_names
    trainer.reward_funcs, trainer.reward_processing_classes, trainer.reward_func_names = [fn], [None], ["fn"]
    trainer._pending_extra_logs.clear()
    try:
        out = trainer._calculate_rewards(inputs, prompts, completions, IDS)
    finally:
        trainer.reward_funcs, trainer.reward_processing_classes, trainer.reward_func_names = saved
    extras = {k: [str(v) for v in values] for k, values in trainer._pending_extra_logs.items()}
    return out[:, 0].tolist(), extras


def request(conversational: bool, rewards, with_ids: bool = True) -> reward_pb2.ScoreRequest:
    samples = []
    for i, (prompt, completion) in enumerate(zip(PROMPTS, COMPLETIONS, strict=True)):
        sample = reward_pb2.Sample(completion=completion, fields={"solution": COLUMNS["solution"][i]})
        if conversational:
            sample.prompt.append(reward_pb2.ChatMessage(role="user", content=prompt))
        else:
            sample.prompt_text = prompt
        for key in ("difficulty", "verification_info"):
            sample.typed_fields[key].CopyFrom(to_value(COLUMNS[key][i]))
        if with_ids:
            sample.completion_ids.ids.extend(IDS[i])
        samples.append(sample)
    specs = []
    for reward in rewards:
        name, params = reward if isinstance(reward, tuple) else (reward, {})
        struct = struct_pb2.Struct()
        struct.update(params)
        specs.append(reward_pb2.RewardSpec(name=name, params=struct))
    return reward_pb2.ScoreRequest(samples=samples, rewards=specs)


def same(a, b) -> bool:
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def test_list_rewards_shows_the_functions_with_source_version_fields_and_typed_params(server, sources) -> None:
    response = server.stub().ListRewards(reward_pb2.ListRewardsRequest())
    infos = {info.name: info for info in response.rewards}
    path = str((sources / "my_rewards.py").resolve())
    version = hashlib.sha256((sources / "my_rewards.py").read_bytes()).hexdigest()[:12]
    for name in TRL_NAMES:
        assert infos[name].source == path and infos[name].code_version == version and infos[name].available
    assert "helper" not in infos and "_text" not in infos  # helpers are not rewards
    assert list(infos["exact_answer"].fields) == ["solution"]
    assert list(infos["passed_cases_reward"].fields) == ["verification_info"]
    assert infos["token_count"].reads_completion_ids and not infos["exact_answer"].reads_completion_ids
    params = {p.name: p for p in infos["length_penalty"].params}
    assert (
        params["max_chars"].type == reward_pb2.PARAM_TYPE_INTEGER
        and params["max_chars"].default_value.number_value == 200
    )
    assert params["scale"].type == reward_pb2.PARAM_TYPE_NUMBER
    assert params["max_chars"].description == "the length a completion may have for free."
    assert infos["xml_tag_count"].source == "built-in"
    assert response.catalogue_version


@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
def test_scores_equal_calling_the_functions_as_trl_does(server, local, trainer, conversational) -> None:
    rewards = [*TRL_NAMES, ("length_penalty", {"max_chars": 5, "scale": 2.0}), ("difficulty_bonus", {"bonus": 0.5})]
    response = server.stub().Score(request(conversational, rewards))
    if conversational:
        prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
        completions = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    else:
        prompts, completions = PROMPTS, COMPLETIONS
    for reward, result in zip(rewards, response.results, strict=True):
        name, params = reward if isinstance(reward, tuple) else (reward, {})
        fn = functools.partial(getattr(local, name), **params) if params else getattr(local, name)
        expected, extras = trl_scores(trainer, fn, prompts, completions)
        served = [float(np.float32(s)) for s in result.scores]  # TRL keeps rewards as float32
        assert result.name == name and same(served, expected), (name, served, expected)
        assert {c.name: list(c.values) for c in result.extra_columns} == extras
        assert not result.notes  # None (not applicable) needs no note
    by_name = {r.name: list(r.scores) for r in response.results}
    assert math.isnan(by_name["exact_answer"][2])  # None → NaN
    assert by_name["passed_cases_reward"][:2] == [0.5, 1.0]  # verification_info["test_cases"] read as a dict
    assert by_name["prompt_echo_penalty"] == [0.0, 0.0, -1.0]


def test_fields_params_and_ids_are_checked_before_anything_runs(server) -> None:
    stub = server.stub()
    bad = request(False, ["exact_answer"])
    del bad.samples[1].fields["solution"]
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[1] has no field 'solution', which reward 'exact_answer' reads" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(request(False, [("length_penalty", {"max_chars": 1.5})]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'max_chars' must be a whole number" in (
        info.value.details()
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(request(False, ["token_count"], with_ids=False))
    assert "samples[0] has no completion_ids, which reward 'token_count' reads" in info.value.details()


def test_broken_functions_are_that_batch_error_and_the_worker_survives(server) -> None:
    workers = {p.pid for p in psutil.Process(server.process.pid).children()}
    broken = ["raises", "wrong_length", "strings", "not_a_list", "hangs", "hangs_async"]
    response = server.stub().Score(request(False, ["exact_answer", *broken, "xml_tag_count"]))
    results = {r.name: r for r in response.results}
    assert list(results["exact_answer"].scores)[:2] == [1.0, 0.0]  # the others in the request are still scored
    assert len(results["xml_tag_count"].scores) == 3 and not any(math.isnan(s) for s in results["xml_tag_count"].scores)
    expected = {
        "raises": "raises raised ZeroDivisionError: division by zero",
        "wrong_length": "wrong_length returned 1 rewards for 3 completions; TRL needs exactly one per completion",
        "strings": "strings returned a str ('0.5') at index 0; a reward must be a number or None",
        "not_a_list": "not_a_list returned a float, not a list of 3 rewards",
        "hangs": "hangs timed out after 0.9 s for a batch of 3",
        "hangs_async": "hangs_async timed out after 0.9 s for a batch of 3",
    }
    for name, note in expected.items():
        result = results[name]
        assert all(math.isnan(s) for s in result.scores), name  # never a silent 0
        assert [(n.sample_index, n.reason) for n in result.notes] == [(i, note) for i in range(3)]
    # Same worker processes, still serving.
    again = server.stub().Score(request(False, ["exact_answer"]))
    assert list(again.results[0].scores)[:2] == [1.0, 0.0]
    assert {p.pid for p in psutil.Process(server.process.pid).children()} >= workers


def test_signature_rules_in_process() -> None:
    def plain(completions, answer, threshold=0.5, tags=("a",), optional=None, **kwargs):
        """Docstring first line."""
        return [threshold if optional is None else 1.0 for _ in completions]

    reward = trl_reward(plain, "f.py", "v")
    assert reward.required_fields == ("answer",) and reward.split == "whole"
    assert [(p.name, p.type, p.default) for p in reward.params] == [("threshold", float, 0.5), ("tags", tuple, ("a",))]
    assert reward.description == "Docstring first line."
    batch = Batch(["x", "y"], prompts=["p", "p"], fields={"answer": ["1", "2"], "optional": [None, 1]})
    assert reward.score_batch(batch, threshold=0.25, tags=("b",)).scores == [1.0, 1.0]  # the column overrides
    with pytest.raises(Unservable, match="has no name to serve it under"):
        trl_reward(lambda completions, **kwargs: [], "f.py", "")

    @splittable
    def per_sample(completions, **kwargs):
        return [0.0] * len(completions)

    assert trl_reward(per_sample, "f.py", "").split == "sample"
    mixed = Batch(["a", "b"], prompts=["text", [{"role": "user", "content": "turns"}]])
    result = trl_reward(per_sample, "f.py", "").score_batch(mixed)
    assert result.notes[0].reason == (
        "per_sample: samples[1] has a chat prompt but samples[0] has a plain-text prompt; "
        "TRL passes one shape per batch: send them in separate requests"
    )
