"""trainer_client.integrations against a real reward server, called the way each trainer calls them.

Each test rebuilds the trainer's exact calling code from its source at the commit named in the adapter's docstring
(verl b178a3c, OpenRLHF 3c3be62, slime 624b824, AReaL 4aef98d, verifiers 0.1.14), quoting it, and compares every
number with a plain gRPC Score of the same samples, on samples that cover every outcome (scored, not applicable,
reward error, unavailable).

Where a trainer's released package runs here, its own code drives the adapter too (``pip install --no-deps
--target`` at test time, no CUDA torch; see each file's docstring for what is installed):
``tests/test_trainers_verl_package.py`` (verl 0.9.1: ``RewardLoopManager.compute_rm_score`` on local Ray with two
reward-loop actors, and ``BatchRewardManager``), ``tests/test_trainers_areal_package.py`` (areal 1.0.4:
``RLVRWorkflow`` under ``GroupedRolloutWorkflow``, ``AsyncRewardWrapper``'s process pool),
``tests/test_trainers_verifiers_package.py`` (verifiers 0.1.14: ``SingleTurnEnv.evaluate`` down to
``Rubric.score_group``) and ``tests/test_http_openrlhf_package.py`` (openrlhf 0.11.2: ``SingleTurnAgentExecutor``
loading the adapter file). Their full installs are not done: verl's brings ray[default], wandb, tensorboard (46
packages), AReaL's a CUDA torch < 2.11 (171 packages), OpenRLHF's deepspeed and flash-attn, which do not build
without a GPU stack, and verifiers 0.1.14's would downgrade datasets, huggingface_hub and regex (0.4.0 has no
Rubric). slime has no package: ``slime`` on PyPI is an unrelated empty 0.0.0 (2020), and THUDM's slime installs only
from a clone of its repository (``pip install -e .`` in its Docker image, with SGLang and Megatron), which CI, reaching
the package registries only, cannot fetch. So slime's calls are tested here alone, rebuilt from 624b824.

The server serves a plugin reward, ``flaky_len``, that raises on "BOOM" (REWARD_ERROR), raises ``Unavailable`` on
"DOWN" (UNAVAILABLE) and returns None on "SKIP" (NOT_APPLICABLE), beside two built-ins.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import math
import multiprocessing
import pickle
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from reward.v1 import reward_pb2 as pb
from tests.conftest import RunningServer, start_server, stop_server

PLUGIN = '''
from reward_server import SampleScore, sample_reward
from reward_server.errors import Unavailable


@sample_reward("flaky_len")
def flaky_len(completion: str, *, scale: float = 0.01) -> float | SampleScore:
    """scale x the completion's length; fails on BOOM and DOWN, does not apply on SKIP."""
    if "BOOM" in completion:
        raise RuntimeError("boom in the reward")
    if "DOWN" in completion:
        raise Unavailable("judge endpoint down")
    if "SKIP" in completion:
        return SampleScore(None, note="nothing to measure")
    return scale * len(completion)
'''
REWARDS = ["xml_correctness", {"name": "xml_strict_format", "weight": 2.0}, {"name": "flaky_len", "weight": 0.5}]
NAMES = ["xml_correctness", "xml_strict_format", "flaky_len"]
GOOD = "<reasoning>\n6*7\n</reasoning>\n<answer>\n42\n</answer>\n"
#: (completion, label): right, wrong, not applicable in one reward, reward error, unavailable; twice over.
ROWS = [
    (GOOD, "42"),
    ("The answer is 41.", "42"),
    (GOOD.replace("6*7", "SKIP"), "42"),
    (GOOD.replace("6*7", "BOOM"), "42"),
    ("<answer>\n7\n</answer> DOWN", "7"),
    ("<answer>\n7\n</answer>", "7"),
] * 2
FAILED = [False, False, False, True, True, False] * 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("integrations")
    (tmp / "flaky.py").write_text(PLUGIN)
    running = start_server(tmp, "--workers", "1", "--rewards-from", str(tmp / "flaky.py"))
    yield running
    stop_server(running)


@pytest.fixture
def env(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The settings as environment variables (how the module-level functions are configured)."""
    values = {
        "REWARD_SERVICE_TARGET": server.address,
        "REWARD_SERVICE_REWARDS": __import__("json").dumps(REWARDS),
        "REWARD_SERVICE_LABEL_FIELD": "answer",
        "REWARD_SERVICE_FAILURE_SCORE": "-1.0",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def plain_score(server: RunningServer, rows: list[tuple[str, str]], prompts: list[Any] | None = None):
    """The same samples through a bare gRPC stub: (totals, {reward: scores}, failed per sample)."""
    specs = []
    for reward in REWARDS:
        spec = pb.RewardSpec(name=reward) if isinstance(reward, str) else pb.RewardSpec(name=reward["name"])
        if isinstance(reward, dict):
            spec.weight = reward["weight"]
        specs.append(spec)
    samples = []
    for i, (completion, label) in enumerate(rows):
        sample = pb.Sample(completion=completion, fields={"answer": label})
        prompt = prompts[i] if prompts else ""
        if isinstance(prompt, str):
            sample.prompt_text = prompt
        else:
            sample.prompt.extend(pb.ChatMessage(role=m["role"], content=m["content"]) for m in prompt)
        samples.append(sample)
    response = server.stub().Score(pb.ScoreRequest(samples=samples, rewards=specs), timeout=60)
    bad = {pb.NOTE_KIND_REWARD_ERROR, pb.NOTE_KIND_TIME_LIMIT, pb.NOTE_KIND_UNAVAILABLE}
    failed = [False] * len(rows)
    for result in response.results:
        for note in result.notes:
            failed[note.sample_index] |= note.kind in bad
    scores = {name: list(r.scores) for name, r in zip(NAMES, response.results, strict=True)}
    return list(response.total), scores, failed


def expected_totals(totals: list[float], failed: list[bool], failure_score: float = -1.0) -> list[float]:
    """What a trainer gets: the total; failure_score where a reward failed; 0.0 where nothing applied."""
    return [failure_score if f else (0.0 if math.isnan(t) else t) for t, f in zip(totals, failed, strict=True)]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


def test_plain_score_has_every_outcome(server: RunningServer) -> None:
    """The fixture's samples cover scored, not applicable and both failure kinds (else the tests below prove less)."""
    totals, scores, failed = plain_score(server, ROWS)
    assert failed == FAILED
    assert math.isnan(scores["flaky_len"][2]) and not failed[2]
    assert scores["xml_correctness"][0] == 2.0 and scores["xml_strict_format"][0] == 0.5
    assert not any(math.isnan(t) for t in totals)


# -- verl ------------------------------------------------------------------------------------------------------


def verl_custom_reward_fn(path: str, name: str, reward_kwargs: dict[str, Any]):
    """``verl/trainer/ppo/reward.py::get_custom_reward_fn`` and ``utils/import_utils.py::load_module`` at b178a3c:
    ``pkg://`` paths are imported as modules; an async function is wrapped as
    ``partial(_call_with_kwargs_async, raw_fn, reward_kwargs)`` with ``merged_kwargs = {**kwargs, **extra_kwargs}``."""
    module = importlib.import_module(path[len("pkg://") :].replace("/", "."))
    raw_fn = getattr(module, name)

    def _call_with_kwargs(raw_fn, extra_kwargs, *args, **kwargs):
        return raw_fn(*args, **{**kwargs, **extra_kwargs})

    async def _call_with_kwargs_async(raw_fn, extra_kwargs, *args, **kwargs):
        return await raw_fn(*args, **{**kwargs, **extra_kwargs})

    if not inspect.iscoroutinefunction(raw_fn):
        return partial(_call_with_kwargs, raw_fn, reward_kwargs)
    return partial(_call_with_kwargs_async, raw_fn, reward_kwargs)


async def verl_reward_loop(compute_score, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``RewardLoopWorker.compute_score_batch`` (one task per sample, ``asyncio.gather``) over
    ``NaiveRewardManager.run_single`` (decode in the default executor, then
    ``await compute_score(data_source=, solution_str=, ground_truth=, extra_info=)``) at b178a3c."""
    loop = asyncio.get_running_loop()
    assert inspect.iscoroutinefunction(compute_score)  # NaiveRewardManager.is_async_reward_score

    async def run_single(item: dict[str, Any]) -> dict[str, Any]:
        extra_info = dict(item.get("extra_info", {}))
        extra_info["num_turns"] = None
        extra_info["rollout_reward_scores"] = {}
        response_str = await loop.run_in_executor(None, lambda: item["response"])  # tokenizer.decode
        result = await compute_score(
            data_source=item["data_source"],
            solution_str=response_str,
            ground_truth=item["reward_model"]["ground_truth"],
            extra_info=extra_info,
        )
        reward_extra_info = {}
        if isinstance(result, dict):
            score = result["score"]
            for key, value in result.items():
                reward_extra_info[key] = value
        else:
            score = result
            reward_extra_info["acc"] = score
        return {"reward_score": score, "reward_extra_info": reward_extra_info}

    tasks = [asyncio.create_task(run_single(item)) for item in items]
    return await asyncio.gather(*tasks)


def test_verl_reward_loop(server: RunningServer) -> None:
    """compute_score under verl's reward loop: fixed keys, the plain totals, and one Score call for the batch."""
    reward_kwargs = {"target": server.address, "rewards": REWARDS, "label_field": "answer", "failure_score": -1.0}
    compute_score = verl_custom_reward_fn("pkg://trainer_client.integrations.verl", "compute_score", reward_kwargs)
    items = [
        {
            "data_source": "gsm8k",
            "response": c,
            "reward_model": {"ground_truth": g},
            "extra_info": {"split": "train", "index": i, "answer": "raw #### " + g},
        }
        for i, (c, g) in enumerate(ROWS)
    ]
    before = server.score_calls()
    outputs = asyncio.run(verl_reward_loop(compute_score, items))
    assert server.score_calls() - before == 1

    # RewardLoopManager.compute_rm_score: the keys of the first sample, one np.array per key.
    infos = [o["reward_extra_info"] for o in outputs]
    keys = list(infos[0].keys())
    assert keys == ["score", *NAMES, "failed"]
    assert all(list(info.keys()) == keys for info in infos)
    totals, scores, failed = plain_score(server, ROWS)
    assert [o["reward_score"] for o in outputs] == pytest.approx(expected_totals(totals, failed))
    assert [info["failed"] for info in infos] == failed
    for name in NAMES:
        assert all(same(info[name], s) for info, s in zip(infos, scores[name], strict=True)), name
    assert all(math.isfinite(o["reward_score"]) for o in outputs)  # verl's float32 reward tensor


def test_verl_batch_manager(server: RunningServer) -> None:
    """compute_score_batch as ``BatchRewardManager.verify`` calls it (b178a3c): keyword lists plus reward_kwargs."""
    compute_score = verl_custom_reward_fn(
        "pkg://trainer_client.integrations.verl",
        "compute_score_batch",
        {"target": server.address, "rewards": REWARDS, "failure_score": -1.0},
    )
    results = compute_score(
        data_sources=["gsm8k"] * len(ROWS),
        solution_strs=[c for c, _ in ROWS],
        ground_truths=[g for _, g in ROWS],
        extra_infos=[{"rollout_reward_scores": {}} for _ in ROWS],
    )
    totals, _, failed = plain_score(server, ROWS)
    assert [r["score"] for r in results] == pytest.approx(expected_totals(totals, failed))
    assert [r["failed"] for r in results] == failed


# -- OpenRLHF --------------------------------------------------------------------------------------------------

CHAT = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


def openrlhf_load(path: Path):
    """``SingleTurnAgentExecutor.__init__`` at 3c3be62: a ``remote_url`` ending in .py is executed as module
    ``reward_func`` and its ``reward_func`` attribute is the reward function."""
    spec = importlib.util.spec_from_file_location("reward_func", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def openrlhf_experience(rewards_info: dict[str, Any]) -> dict[str, Any]:
    """What ``_process_response_into_experience`` (samples_generator.py at 3c3be62) makes of one answer."""
    import torch

    score_value = rewards_info.get("scores")
    if score_value is None:
        score_value = rewards_info.get("rewards")
    info = {"reward": torch.tensor([rewards_info["rewards"]]), "score": torch.tensor([score_value])}
    for key, value in (rewards_info.get("extra_logs") or {}).items():
        if isinstance(value, torch.Tensor):
            value = value.flatten()[0].item()
        info[key] = torch.tensor([value])
    return info


def test_openrlhf_file_form(server: RunningServer, env: dict[str, str]) -> None:
    """The module file itself as ``--reward.remote_url``, called per sample from threads as ``_fetch_rewards_via_func``
    does (3c3be62), and in one batch as OpenRLHF ≤ 0.8 did: rewards are the plain totals, scores NaN where a reward
    failed, extra_logs one value per sample."""
    import trainer_client.integrations.openrlhf as module

    reward_func = openrlhf_load(Path(module.__file__))
    prompts = [CHAT.format(q=f"question {i}") for i in range(len(ROWS))]
    queries = [p + c + "<|im_end|>\n<|endoftext|>" for p, (c, _) in zip(prompts, ROWS, strict=True)]
    labels = [g for _, g in ROWS]

    async def per_sample() -> list[dict[str, Any]]:
        tasks = [
            asyncio.to_thread(reward_func, [q], [p], [g]) for q, p, g in zip(queries, prompts, labels, strict=True)
        ]
        return list(await asyncio.gather(*tasks))

    infos = [openrlhf_experience(answer) for answer in asyncio.run(per_sample())]
    totals, scores, failed = plain_score(server, ROWS, prompts)
    assert [i["reward"].shape for i in infos] == [(1,)] * len(ROWS)
    assert [i["reward"].item() for i in infos] == pytest.approx(expected_totals(totals, failed))
    assert [math.isnan(i["score"].item()) for i in infos] == failed
    assert [bool(i["reward_failed"].item()) for i in infos] == failed
    assert all(same(i["xml_correctness"].item(), s) for i, s in zip(infos, scores["xml_correctness"], strict=True))

    batch = reward_func(queries, prompts, labels)
    assert batch["rewards"].tolist() == pytest.approx(expected_totals(totals, failed))
    assert batch["extra_logs"]["reward_failed"].tolist() == [float(f) for f in failed]


# -- slime -----------------------------------------------------------------------------------------------------


@dataclass
class SlimeSample:
    """The fields of ``slime/utils/types.py::Sample`` (624b824) that a reward function reads or writes."""

    prompt: str | list[dict[str, str]] = ""
    response: str = ""
    label: str | None = None
    reward: float | dict[str, Any] | None = None
    remove_sample: bool = False
    metadata: dict = field(default_factory=dict)


def slime_load_function(path: str):
    """``slime/utils/misc.py::load_function`` at 624b824."""
    module_path, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_path), attr)


def test_slime_custom_rm(server: RunningServer, env: dict[str, str]) -> None:
    """``async_rm`` per sample under ``asyncio.gather`` (one Score call), and ``batched_async_rm`` with --group-rm;
    the number slime gets is the total; with --reward-key a dict holding it; a failed sample is removed."""
    rm = slime_load_function("trainer_client.integrations.slime.custom_rm")
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(len(ROWS))]
    totals, _, failed = plain_score(server, ROWS, prompts)
    expected = expected_totals(totals, failed)

    def samples() -> list[SlimeSample]:
        return [
            SlimeSample(prompt=p, response=c, label=g, metadata={"rm_type": "x"})
            for p, (c, g) in zip(prompts, ROWS, strict=True)
        ]

    async def per_sample(args, group):
        return await asyncio.gather(*[rm(args, s) for s in group])  # async_rm: `return await rm_function(args, sample)`

    group = samples()
    before = server.score_calls()
    rewards = asyncio.run(per_sample(SimpleNamespace(reward_key=None, eval_reward_key=None), group))
    assert server.score_calls() - before == 1
    assert rewards == pytest.approx(expected)
    assert [s.remove_sample for s in group] == failed

    group = samples()  # --group-rm: batched_async_rm awaits rm_function(args, samples)
    args = SimpleNamespace(reward_key="score", eval_reward_key=None)
    rewards = asyncio.run(rm(args, group))
    for sample, reward in zip(group, rewards, strict=True):
        sample.reward = reward
    assert [s.reward[args.reward_key] for s in group] == pytest.approx(expected)  # Sample.get_reward_value
    assert [s.reward["failed"] for s in group] == failed == [s.remove_sample for s in group]


# -- AReaL -----------------------------------------------------------------------------------------------------


async def areal_call(executor: ProcessPoolExecutor, reward_fn, *args, timeout: float = 15, **kwargs):
    """``AsyncRewardWrapper.__call__`` at 4aef98d, one attempt: the function and its arguments go to the process
    pool as ``partial(self.reward_fn, *args, **kwargs)`` under ``asyncio.wait_for(timeout=15)``."""
    loop = asyncio.get_event_loop()
    future = loop.run_in_executor(executor, partial(reward_fn, *args, **kwargs))
    return await asyncio.wait_for(future, timeout=timeout)


def test_areal_reward_fn_in_process_pool(server: RunningServer, env: dict[str, str]) -> None:
    """``RLVRWorkflow`` (4aef98d) imports a string reward_fn and calls it in a process pool with
    ``(prompt_str, completions_str, input_tokens, output_tokens, **task_data)``: each pool process connects on its
    own; the floats are the plain totals; a failed sample raises (AReaL rejects the rollout). The pool uses spawn
    rather than AReaL's default fork so the test's own gRPC channels are not forked; the instance form is pickled
    into it with its settings only."""
    from trainer_client.integrations.areal import AReaLReward, RewardFailed

    reward_fn = slime_load_function("trainer_client.integrations.areal.reward_fn")  # import_from_string: the same
    prompts = [CHAT.format(q=f"question {i}") for i in range(len(ROWS))]
    totals, _, failed = plain_score(server, ROWS, prompts)
    instance = AReaLReward(target=server.address, rewards=REWARDS, failure_score=-1.0, on_failure="score")

    async def run(fn) -> list[Any]:
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            calls = [
                areal_call(pool, fn, p, c + "<|im_end|>", [1, 2], [3, 4, 5], answer=g, messages=[{"role": "user"}])
                for p, (c, g) in zip(prompts, ROWS, strict=True)
            ]
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(run(reward_fn))
    for result, total, bad in zip(results, totals, failed, strict=True):
        if bad:
            assert isinstance(result, RewardFailed) and ("reward_error" in str(result) or "unavailable" in str(result))
        else:
            assert result == pytest.approx(0.0 if math.isnan(total) else total)
    assert asyncio.run(run(instance)) == pytest.approx(expected_totals(totals, failed))


# -- verifiers -------------------------------------------------------------------------------------------------


async def verifiers_score_group(funcs: list, weights: list[float], states: list[dict[str, Any]]) -> None:
    """``Rubric.score_group`` of verifiers 0.1.14 for group functions: ``_is_group_func`` by plural parameter names,
    ``**group_score_objects(states)`` (the function takes **kwargs), reward += score × weight,
    ``advantage = reward - mean``, ``metrics[func.__name__]``."""
    indicators = {"states", "prompts", "completions", "answers", "tasks", "infos"}
    n = len(states)
    rewards, metrics = [0.0] * n, {}
    for func, weight in zip(funcs, weights, strict=True):
        assert set(inspect.signature(func).parameters) & indicators  # Rubric._is_group_func
        merged = {
            "prompts": [s["prompt"] for s in states],
            "completions": [s["completion"] for s in states],
            "answers": [s.get("answer", "") for s in states],
            "states": states,
            "tasks": [None] * n,
            "infos": [s.get("info", {}) for s in states],
            "parser": object(),
        }
        result = func(**merged)
        scores = await result if inspect.isawaitable(result) else result
        metrics[func.__name__] = list(scores)
        for i in range(n):
            rewards[i] += scores[i] * weight
    mean = sum(rewards) / n
    for i, state in enumerate(states):
        state["reward"], state["advantage"] = rewards[i], rewards[i] - mean
        state["metrics"] = {name: values[i] for name, values in metrics.items()}


def test_verifiers_group_function(server: RunningServer) -> None:
    """A Rubric group function: the plain totals, failures recorded on each state, finite advantages."""
    from trainer_client.integrations.verifiers import RemoteGroupReward

    func = RemoteGroupReward(target=server.address, rewards=REWARDS, failure_score=-1.0)
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(len(ROWS))]
    states = [
        {"prompt": p, "completion": [{"role": "assistant", "content": c}], "answer": g, "info": {"level": 1}}
        for p, (c, g) in zip(prompts, ROWS, strict=True)
    ]
    asyncio.run(verifiers_score_group([func], [1.0], states))
    totals, _, failed = plain_score(server, ROWS, prompts)
    assert [s["reward"] for s in states] == pytest.approx(expected_totals(totals, failed))
    assert [s["metrics"]["reward_service"] for s in states] == pytest.approx(expected_totals(totals, failed))
    assert [s["reward_service"]["failed"] for s in states] == failed
    kinds = {s["reward_service"]["failures"]["flaky_len"]["kind"] for s, f in zip(states, failed, strict=True) if f}
    assert kinds == {"reward_error", "unavailable"}
    assert all(math.isfinite(s["advantage"]) for s in states)


# -- a sample no reward applies to ------------------------------------------------------------------------------


def test_a_sample_no_reward_applies_to_is_no_failure_and_totals_zero_in_every_adapter(server: RunningServer) -> None:
    """The one rule of every route and adapter: gRPC Score's total is NaN where every note is NOT_APPLICABLE; the
    trainer gets 0.0 (TRL's nansum of nothing), unflagged; AReaL does not raise; OpenRLHF's ``scores`` of a reward
    that does not apply is 0.0 too, not the NaN that would drop the group as if it had failed."""
    from trainer_client.integrations.areal import AReaLReward
    from trainer_client.integrations.openrlhf import OpenRLHFReward
    from trainer_client.integrations.slime import SlimeReward
    from trainer_client.integrations.verifiers import RemoteGroupReward
    from trainer_client.integrations.verl import compute_score_batch

    skip = GOOD.replace("6*7", "SKIP")
    only = {"target": server.address, "rewards": ["flaky_len"]}
    response = server.stub().Score(
        pb.ScoreRequest(samples=[pb.Sample(completion=skip)], rewards=[pb.RewardSpec(name="flaky_len")]), timeout=60
    )
    assert math.isnan(response.total[0]) and response.results[0].notes[0].kind == pb.NOTE_KIND_NOT_APPLICABLE
    (verl,) = compute_score_batch(["d"], [skip], ["42"], [{}], **only)
    assert verl["score"] == 0.0 and verl["failed"] is False
    assert AReaLReward(**only)("q", skip) == 0.0
    sample = SlimeSample(prompt="q", response=skip, label="42")
    assert asyncio.run(SlimeReward(**only)(SimpleNamespace(reward_key="r"), sample)) == {
        "flaky_len": pytest.approx(math.nan, nan_ok=True),
        "failed": False,
        "r": 0.0,
    }
    assert not sample.remove_sample
    assert asyncio.run(RemoteGroupReward(**only)(prompts=["q"], completions=[skip], answers=["42"])) == [0.0]
    answer = OpenRLHFReward(**only)([CHAT.format(q="q") + skip], [CHAT.format(q="q")], ["42"])
    assert answer["rewards"].tolist() == [0.0] and answer["extra_logs"]["reward_failed"].tolist() == [0.0]
    graded = OpenRLHFReward(target=server.address, rewards=REWARDS, scores_reward="flaky_len")
    rows = ROWS[:4]  # right, wrong, flaky_len not applicable, flaky_len failed
    prompts = [CHAT.format(q=f"question {i}") for i in range(len(rows))]
    answer = graded([p + c for p, (c, _) in zip(prompts, rows, strict=True)], prompts, [g for _, g in rows])
    _, scores, failed = plain_score(server, rows, prompts)
    assert math.isnan(scores["flaky_len"][2]) and not failed[2] and failed[3]
    got = answer["scores"].tolist()
    assert got[:3] == pytest.approx([scores["flaky_len"][0], scores["flaky_len"][1], 0.0]) and math.isnan(got[3])


# -- pickling and configuration ----------------------------------------------------------------------------------


def test_adapters_pickle_without_their_connection(server: RunningServer) -> None:
    """Every adapter pickles after it has connected; the copy connects on its own first call."""
    from trainer_client.integrations.areal import AReaLReward
    from trainer_client.integrations.openrlhf import OpenRLHFReward
    from trainer_client.integrations.scorer import scorer_for
    from trainer_client.integrations.settings import Settings
    from trainer_client.integrations.slime import SlimeReward
    from trainer_client.integrations.verifiers import RemoteGroupReward

    settings = {"target": server.address, "rewards": REWARDS}
    scorer = scorer_for(Settings.resolve(**settings))
    scorer.score_now([scorer.sample(GOOD, label="42")])  # connected
    copy = pickle.loads(pickle.dumps(scorer))
    assert copy.settings == scorer.settings and copy._client is None
    (result,) = copy.score_now([copy.sample(GOOD, label="42")])
    assert result.total == pytest.approx(3.0 + 0.5 * 0.01 * len(GOOD))
    for adapter in (
        OpenRLHFReward(**settings),
        SlimeReward(**settings),
        AReaLReward(**settings),
        RemoteGroupReward(**settings),
    ):
        again = pickle.loads(pickle.dumps(adapter))
        assert again.settings == adapter.settings


def test_settings_errors_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer_client.integrations.settings import Settings

    monkeypatch.delenv("REWARD_SERVICE_REWARDS", raising=False)
    with pytest.raises(ValueError, match="REWARD_SERVICE_REWARDS"):
        Settings.resolve(target="h:1")
    with pytest.raises(ValueError, match="deadline_s"):
        Settings.resolve(target="h:1", rewards=["a"], deadline_s="soon")
    with pytest.raises(ValueError, match=r"\['score'\]"):
        Settings.resolve(target="h:1", rewards=["score"], reserved=("score", "failed"))
    monkeypatch.setenv("REWARD_SERVICE_REWARDS", '[{"name": "a", "weight": 2}]')
    assert Settings.resolve(target="h:1").rewards == ({"name": "a", "weight": 2},)
