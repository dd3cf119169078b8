"""remote_reward_funcs against the real reward server: one Score call per batch, TRL's calling convention."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NOTEBOOK_REWARDS, REPO, free_port, start_server, stop_server
from tiny_models import build_tiny_causal_lm

from reward.v1 import reward_pb2 as pb
from trainer_client import PreflightError, RetryPolicy, RewardClient, RewardServiceError, remote_reward_funcs
from trainer_client.trl_adapter import FAILED_METRIC, RTT_METRIC, SERVER_METRIC

REASONED = "<reasoning>\nweil\n</reasoning>\n<answer>\n42\n</answer>\n"
PROMPTS = [[{"role": "user", "content": "6*7?"}]] * 2 + [[{"role": "user", "content": "2+2?"}]] * 2
COMPLETIONS = [
    [{"role": "assistant", "content": c}] for c in (REASONED, "<answer>41</answer>", "<answer>4</answer>", "")
]


class Metrics:
    """Collects what the reward functions log through TRL's ``log_metric`` keyword."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def __call__(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)


class Extras:
    """Collects what the reward functions hand TRL's ``log_extra`` (each call kept, to count them)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list]] = []

    def __call__(self, column: str, values: list) -> None:
        self.calls.append((column, list(values)))


class RecordingClient(RewardClient):
    """A real client that also keeps every ScoreRequest it built and counts its catalogue look-ups (sync or not)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[pb.ScoreRequest] = []
        self.lookups = 0

    def _request(self, *args, **kwargs) -> pb.ScoreRequest:
        request = super()._request(*args, **kwargs)
        self.sent.append(request)
        return request

    def catalogue(self, **kwargs):
        self.lookups += 1
        return super().catalogue(**kwargs)

    async def catalogue_async(self, **kwargs):
        self.lookups += 1
        return await super().catalogue_async(**kwargs)


def trl_call(funcs, prompts, completions, *, completion_ids=None, log_extra=None, **columns):
    """Call the functions the way GRPOTrainer does: every async one gathered, same lists, extra kwargs."""
    metrics = Metrics()
    ids = completion_ids if completion_ids is not None else [[1]] * len(completions)

    async def gather():
        kwargs = {"completion_ids": ids, "trainer_state": None, "log_metric": metrics, **columns}
        if log_extra is not None:
            kwargs["log_extra"] = log_extra
        return await asyncio.gather(*(f(prompts=prompts, completions=completions, **kwargs) for f in funcs))

    return asyncio.run(gather()), metrics


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("adapter"), config="workers: 1\nmath_timeout_s: 1.0\n")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server):
    return RewardClient(server.address, deadline_s=30)


def test_one_score_call_per_batch_for_all_functions(server, client) -> None:
    funcs = remote_reward_funcs(client, NOTEBOOK_REWARDS)
    assert [f.__name__ for f in funcs] == NOTEBOOK_REWARDS
    answers = ["42", "42", 4, "4"]  # an int column value travels typed; text-reading rewards see "4"
    before = server.score_calls()
    outputs, metrics = trl_call(funcs, PROMPTS, COMPLETIONS, answer=answers)
    assert server.score_calls() == before + 1
    direct = client.score(
        [
            {"prompt": p, "completion": c, "fields": {"answer": str(a)}}
            for p, c, a in zip(PROMPTS, COMPLETIONS, answers, strict=True)
        ],
        NOTEBOOK_REWARDS,
    )
    assert outputs == [direct[name] for name in NOTEBOOK_REWARDS]
    assert outputs[-1] == [2.0, 0.0, 2.0, 0.0]  # correctness
    assert len(metrics.values[RTT_METRIC]) == 1 and metrics.values[RTT_METRIC][0] > 0
    assert len(metrics.values[SERVER_METRIC]) == 1 and metrics.values[FAILED_METRIC] == [0.0]


def test_the_next_batch_is_a_new_call_even_with_equal_content(server, client) -> None:
    funcs = remote_reward_funcs(client, ["xml_integer", "xml_soft_format"])
    before = server.score_calls()
    first, _ = trl_call(funcs, PROMPTS, COMPLETIONS)
    second, _ = trl_call(funcs, PROMPTS, COMPLETIONS)
    assert first == second and server.score_calls() == before + 2


def test_standard_completions_weights_and_params(server, client) -> None:
    german = "<Begründung>\nweil\n</Begründung>\n<Antwort>\n42\n</Antwort>"
    tags = {"reasoning_tag": "Begründung", "answer_tag": "Antwort"}
    rewards = [
        {"name": "xml_correctness", "weight": 0.5, "params": tags},
        {"name": "xml_strict_format", "params": tags},
    ]
    funcs = remote_reward_funcs(client, rewards)
    (correct, strict), _ = trl_call(funcs, ["6*7?", "6*7?"], [german, "42"], answer=["42", "42"])
    # Scores come back unweighted: TRL applies GRPOConfig.reward_weights itself.
    assert correct == [2.0, 0.0] and strict == [0.5, 0.0]


def test_nan_becomes_none(server, client) -> None:
    hanging = ("\\boxed{(x+1)^{2999}*(x+2)}", "(x+1)^{3000}")  # math-verify hangs; the server's 1 s limit → NaN
    funcs = remote_reward_funcs(client, ["math_equivalence"])
    (scores,), _ = trl_call(funcs, ["q", "q"], [hanging[0], "\\boxed{4}"], answer=[hanging[1], "4"])
    assert scores == [None, 1.0]


def test_record_to_writes_every_scored_batch(server, client, tmp_path) -> None:
    record = tmp_path / "scored.jsonl"
    funcs = remote_reward_funcs(client, ["correctness_reward_func"], record_to=record)
    trl_call(funcs, PROMPTS, COMPLETIONS, answer=["42"] * 4)
    (line,) = [json.loads(x) for x in record.read_text().splitlines()]
    assert line["scores"] == {"correctness_reward_func": [2.0, 0.0, 0.0, 0.0]}
    assert line["samples"][0] == {"prompt": PROMPTS[0], "completion": REASONED, "fields": {"answer": "42"}}
    assert line["request_id"] in server.log()


def test_a_failure_raises_or_returns_none_but_never_zero(caplog) -> None:
    dead = f"127.0.0.1:{free_port()}"
    client = RewardClient(dead, deadline_s=5, retry=RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.2))
    # Built with the catalogue check (the default), a dead service fails before any model loads.
    with pytest.raises(PreflightError, match=r"is not reachable \(UNAVAILABLE.*start it with `reward-server`"):
        remote_reward_funcs(client, ["xml_integer"])
    # Built without it (check=False), the service dies later: the step fails, or scores None with on_error="none".
    with pytest.raises(RewardServiceError) as caught:
        trl_call(remote_reward_funcs(client, ["xml_integer"], check=False), ["q"], ["x"])
    assert caught.value.code.name == "UNAVAILABLE"
    funcs = remote_reward_funcs(client, ["xml_integer", "xml_soft_format"], on_error="none", check=False)
    with caplog.at_level(logging.ERROR, logger="trainer_client.trl_adapter"):
        outputs, metrics = trl_call(funcs, ["q", "q"], ["x", "y"])
    assert outputs == [[None, None], [None, None]]
    assert metrics.values[FAILED_METRIC] == [1.0]
    assert "REWARD SERVICE FAILED" in caplog.text and "UNAVAILABLE" in caplog.text
    assert funcs[0].remote.stats.failures == 1


def test_bad_reward_lists_are_refused_up_front(client) -> None:
    with pytest.raises(ValueError, match="listed twice"):
        remote_reward_funcs(client, ["xml_integer", {"name": "xml_integer"}])
    with pytest.raises(ValueError, match="on_error"):
        remote_reward_funcs(client, ["xml_integer"], on_error="zero")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_reward_error must be 'raise' or 'warn'"):
        remote_reward_funcs(client, ["xml_integer"], on_reward_error="zero")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        remote_reward_funcs(client, [])


@pytest.fixture(scope="module")
def recording(server):
    return RecordingClient(server.address, deadline_s=30)


def test_prompts_go_in_their_true_shape_and_columns_with_their_types(recording) -> None:
    funcs = remote_reward_funcs(recording, ["xml_correctness", "xml_integer"])
    info = [{"tests": [1, 2], "lang": "py"}, {"tests": [], "lang": None}]
    (correct, _), _ = trl_call(funcs, ["6*7?", "2+2?"], [REASONED, "<answer>4</answer>"], answer=[42, "5"], info=info)
    standard = recording.sent[-1]
    for sample, prompt in zip(standard.samples, ["6*7?", "2+2?"], strict=True):
        assert sample.HasField("prompt_text") and sample.prompt_text == prompt and len(sample.prompt) == 0
    first, second = standard.samples
    assert first.typed_fields["answer"].WhichOneof("kind") == "number_value" and "answer" not in first.fields
    assert first.typed_fields["answer"].number_value == 42
    assert second.fields["answer"] == "5" and "answer" not in second.typed_fields  # strings stay in the string map
    tests = first.typed_fields["info"].struct_value.fields["tests"].list_value.values
    assert [v.number_value for v in tests] == [1, 2]
    assert second.typed_fields["info"].struct_value.fields["lang"].WhichOneof("kind") == "null_value"
    assert not first.HasField("completion_ids")  # nobody reads them
    assert correct == [2.0, 0.0]  # the int 42 is the answer "42" for a text-reading reward
    # Conversational: chat turns as prompt, no prompt_text; the assistant message is sent as its text.
    trl_call(funcs, PROMPTS, COMPLETIONS, answer=["42"] * 4)
    chat = recording.sent[-1]
    assert [(m.role, m.content) for m in chat.samples[0].prompt] == [("user", "6*7?")]
    assert not chat.samples[0].HasField("prompt_text") and chat.samples[0].completion == REASONED


def test_completion_ids_are_sent_only_when_a_requested_reward_reads_them(server) -> None:
    client = RecordingClient(server.address, deadline_s=30)
    ids = [[5] * 90, [5] * 10, []]
    trl_call(remote_reward_funcs(client, ["xml_integer"]), ["q"] * 3, ["a", "b", "c"], completion_ids=ids)
    assert not any(s.HasField("completion_ids") for s in client.sent[-1].samples)
    assert client.lookups == 1  # the build-time check's catalogue said: nobody reads them
    params = {"max_completion_len": 100, "soft_punish_cache": 20}
    funcs = remote_reward_funcs(client, [{"name": "soft_overlong_punishment_reward", "params": params}, "xml_integer"])
    for _ in range(2):
        (scores, _), _ = trl_call(funcs, ["q"] * 3, ["a", "b", "c"], completion_ids=ids)
        sent = client.sent[-1].samples
        assert [list(s.completion_ids.ids) for s in sent] == ids and all(s.HasField("completion_ids") for s in sent)
    assert client.lookups == 2  # once per remote_reward_funcs (its check), not once per batch
    from trl.rewards import get_soft_overlong_punishment  # TRL's own function on the same ids

    assert scores == get_soft_overlong_punishment(**params)(completion_ids=ids)


def test_extra_columns_go_to_log_extra_once_per_batch(server, client, tmp_path, caplog) -> None:
    record = tmp_path / "scored.jsonl"
    funcs = remote_reward_funcs(client, ["accuracy_reward", "xml_integer"], record_to=record)
    extras = Extras()
    completions = ["\\boxed{\\frac{1}{2}}", "\\boxed{3}"]
    with caplog.at_level(logging.INFO, logger="trainer_client.trl_adapter"):
        (scores, _), _ = trl_call(funcs, ["q", "q"], completions, solution=["$0.5$", "$4$"], log_extra=extras)
        trl_call(funcs, ["q", "q"], completions, solution=["$0.5$", "$4$"], log_extra=Extras())
    from trl.rewards import accuracy_reward  # TRL's own columns for the same batch

    expected = Extras()
    trl_scores = accuracy_reward([[{"content": c}] for c in completions], ["$0.5$", "$4$"], log_extra=expected)
    assert scores == trl_scores == [1.0, 0.0]
    assert extras.calls == expected.calls  # solution, gold_parsed, answer_parsed: each once, as TRL logs them
    (version,) = {line["catalogue_version"] for line in map(json.loads, record.read_text().splitlines())}
    assert version and caplog.text.count(f"reward catalogue version {version}") == 1  # logged once, not per batch
    line = json.loads(record.read_text().splitlines()[0])
    assert line["extra_columns"]["accuracy_reward"]["gold_parsed"] == dict(expected.calls)["gold_parsed"]
    # Two rewards logging the same column: the second one's is named after it, so each column has one value a row.
    both = Extras()
    funcs = remote_reward_funcs(client, ["accuracy_reward", "reasoning_accuracy_reward"])
    trl_call(funcs, ["q"], ["</think>\\boxed{4}"], solution=["$4$"], log_extra=both)
    names = [column for column, _ in both.calls]
    assert names[:3] == ["solution", "gold_parsed", "answer_parsed"] and "reasoning_accuracy_reward/solution" in names
    assert len(names) == len(set(names)) and all(len(values) == 1 for _, values in both.calls)


def test_extra_columns_reach_trls_completions_table_in_a_real_training_run(server, tmp_path) -> None:
    """grpo-train (real TRL, tiny random model) with accuracy_reward: its columns land in TRL's completions table."""
    model = build_tiny_causal_lm(tmp_path / "tiny-qwen2")
    data = tmp_path / "math.jsonl"
    rows = [("What is 6 times 7?", "42"), ("What is 2 plus 2?", "4"), ("What is 3 times 3?", "9")]
    data.write_text(
        "".join(json.dumps({"question": q, "answer": a, "solution": f"${a}$", "n": int(a)}) + "\n" for q, a in rows)
    )
    out = tmp_path / "run"
    values = {
        "model.name_or_path": model,
        "model.dtype": "float32",
        "dataset.path": data,
        "dataset.format": "generic",
        "dataset.columns": json.dumps({"question": "question", "answer": "answer", "solution": "solution", "n": "n"}),
        "reward_server.target": server.address,
        "reward_server.record_to": out / "scored.jsonl",
        "rewards": json.dumps(["accuracy_reward", "xml_integer"]),
        "training.use_cpu": "true",
        "training.bf16": "false",
        "training.output_dir": out,
        "training.max_steps": 1,
        "training.per_device_train_batch_size": 4,
        "training.num_generations": 4,
        "training.gradient_accumulation_steps": 1,
        "training.max_completion_length": 8,
        "training.logging_steps": 1,
        "training.save_steps": 100,
        "training.log_completions": "true",
    }
    args = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "grpo-train"),
            "--config",
            str(REPO / "configs" / "seed002_qwen2.5-1.5b_gsm8k.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **offline, "TOKENIZERS_PARALLELISM": "0"},
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    import pandas
    from trl.rewards import accuracy_reward

    table = pandas.read_parquet(out / "completions" / "completions_00001.parquet")
    assert len(table) == 4 and {"solution", "gold_parsed", "answer_parsed", "accuracy_reward"} <= set(table.columns)
    # TRL's own accuracy_reward on the table's completions and solutions: the same rewards and the same columns.
    expected = Extras()
    completions = [[dict(m) for m in c] for c in table["completion"]]
    trl_scores = accuracy_reward(completions, list(table["solution"]), log_extra=expected)
    assert [None if math.isnan(x) else x for x in table["accuracy_reward"]] == trl_scores
    for column, values in expected.calls:
        assert list(table[column]) == values, column
    assert set(table["solution"]) <= {f"${a}$" for _, a in rows}
    # The audit trail: typed columns (n is an int) and the catalogue version that scored the step.
    (line,) = [json.loads(x) for x in (out / "scored.jsonl").read_text().splitlines()]
    assert all(isinstance(s["fields"]["n"], int) for s in line["samples"]) and line["catalogue_version"]
    assert f"reward catalogue version {line['catalogue_version']}" in done.stdout + done.stderr


def test_a_stale_catalogue_costs_a_retry_with_token_ids_not_a_failed_step(server) -> None:
    # As after a plugin reload between the look-up and the call: the adapter believes nobody reads token ids.
    client = RecordingClient(server.address, deadline_s=30)
    params = {"max_completion_len": 100, "soft_punish_cache": 20}
    funcs = remote_reward_funcs(client, [{"name": "soft_overlong_punishment_reward", "params": params}])
    funcs[0].remote._id_readers, funcs[0].remote._id_readers_version = [], "stale"
    ((scores,), _) = trl_call(funcs, ["q", "q"], ["a", "b"], completion_ids=[[1] * 90, [1]])
    assert scores == [-0.5, 0.0]
    first, second = client.sent[-2:]
    assert not first.samples[0].HasField("completion_ids") and list(second.samples[0].completion_ids.ids) == [1] * 90
    assert funcs[0].remote.stats.failures == 0
