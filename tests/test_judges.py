"""LLM judges without a model: start-up checks, failures that speak, limits, rubrics and number mode.

A real reward server (one per module) serves judges whose endpoints are STAND-INS on loopback, because what is
tested here is an endpoint that is unreachable or misbehaves, which a real vLLM cannot be made to do on cue:

- :class:`StandIn` speaks the OpenAI chat-completions response shape with answers and logprobs the test chooses
  (so the expected scores are the test's own numbers), answers 503 once per prompt for the ``busy`` model (a
  busy endpoint) and 429 once per prompt for ``limited`` (a rate limit), answers prose for ``prose`` (a judge
  answering out of form), and counts the calls in flight at once (which vLLM does not report exactly).
- :class:`Hang` accepts connections and never answers: a hung endpoint.
- A closed port: an endpoint that is down.

The scores of a real judge model, computed from its own logprobs, are tested in ``test_judges_vllm.py``.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from conftest import REPO, RunningServer, free_port, run_module, start_server, stop_server

from reward.v1 import reward_pb2

#: The stand-in's answer for a choice judge: label "A", first-token logprobs A=0.8, B=0.15, "x"=0.05.
TOP = [("A", math.log(0.8)), ("B", math.log(0.15)), ("x", math.log(0.05))]


class StandIn:
    """An OpenAI-compatible endpoint on loopback whose answers the test chooses (see the module docstring)."""

    def __init__(self) -> None:
        self.in_flight = self.max_in_flight = self.calls = 0
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self._seen_busy: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                names = ["fixed", "busy", "limited", "prose", "number", "rubric"]
                self._json(200, {"object": "list", "data": [{"id": n, "object": "model"} for n in names]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with stand_in._lock:
                    stand_in.calls += 1
                    stand_in.in_flight += 1
                    stand_in.max_in_flight = max(stand_in.max_in_flight, stand_in.in_flight)
                    stand_in.bodies.append(body)
                    stand_in.headers.append(dict(self.headers))
                try:
                    time.sleep(0.05)  # long enough for calls to overlap when the client lets them
                    self._answer(body)
                finally:
                    with stand_in._lock:
                        stand_in.in_flight -= 1

            def _answer(self, body: dict) -> None:
                model, user = body["model"], body["messages"][-1]["content"]
                if model in ("busy", "limited") and (model, user) not in stand_in._seen_busy:
                    stand_in._seen_busy.add((model, user))
                    status = 503 if model == "busy" else 429
                    self._json(status, {"error": "busy"}, {"Retry-After": "0"})
                elif model in ("fixed", "busy", "limited"):
                    self._json(200, completion("A", TOP))
                elif model == "prose":
                    self._json(200, completion("Maybe, it depends.", [("May", -0.1)]))
                elif model == "number":
                    self._json(200, completion("no idea" if "NONUMBER" in user else "I rate it 7 out of 10."))
                elif model == "rubric":  # helpful: A (A=0.9, B=0.1); brief: B (A=0.3, B=0.7)
                    p = 0.9 if "criterion: helpful" in user else 0.3
                    label = "A" if p > 0.5 else "B"
                    self._json(200, completion(label, [("A", math.log(p)), ("B", math.log(1 - p))]))
                else:
                    self._json(404, {"error": f"no model {model}"})

            def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = Backlogged(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Backlogged(ThreadingHTTPServer):
    """A threading HTTP server whose listen backlog takes a burst of connections (the default 5 would leave the
    rest of a burst of 16 waiting for a SYN retransmission, a second later)."""

    request_queue_size = 128
    daemon_threads = True


def completion(text: str, top: list[tuple[str, float]] | None = None) -> dict:
    """A chat-completion response in OpenAI's shape, with the first token's top logprobs when given."""
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if top is not None:
        entries = [{"token": t, "logprob": lp} for t, lp in top]
        chosen = dict(top).get(text, top[0][1])  # the answer is its first token (single-token labels)
        choice["logprobs"] = {"content": [{"token": text, "logprob": chosen, "top_logprobs": entries}]}
    return {"object": "chat.completion", "choices": [choice], "usage": {"prompt_tokens": 12, "completion_tokens": 1}}


class Hang:
    """A hung endpoint: accepts connections, reads, never answers; counts the connections the client dropped."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.accepted = self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            self.accepted += 1
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                pass
        self.dropped += 1


@pytest.fixture(scope="module")
def endpoints() -> dict:
    return {"stand_in": StandIn(), "hang": Hang(), "cancel": Hang()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, endpoints: dict) -> Iterator[RunningServer]:
    url = endpoints["stand_in"].url
    choices = '{"A": 1.0, "B": 0.0}'
    config = f"""
workers: 1
judges:
  fixed:
    endpoint: {url}
    model: fixed
    api_key_env: TEST_JUDGE_KEY
    template: "Q: {{{{ prompt }}}} A: {{{{ completion }}}} City: {{{{ city }}}}"
    choices: {choices}
  busy:
    endpoint: {url}
    model: busy
    max_concurrency: 2
    template: "busy {{{{ completion }}}}"
    choices: {choices}
  limited:
    endpoint: {url}
    model: limited
    template: "limited {{{{ completion }}}}"
    choices: {choices}
  prose:
    endpoint: {url}
    model: prose
    score: argmax
    template: "{{{{ completion }}}}"
    choices: {choices}
  rated:
    endpoint: {url}
    model: number
    template: "Rate 1-10: {{{{ completion }}}}"
    number: {{range: [1, 10]}}
  rubric:
    endpoint: {url}
    model: rubric
    template: "criterion: {{{{ criterion }}}}\\n{{{{ completion }}}}"
    choices: {choices}
    rubric:
      - {{name: helpful, criterion: helpful, weight: 3}}
      - {{name: brief, criterion: brief, weight: 1}}
  down:
    endpoint: http://127.0.0.1:{free_port()}/v1
    model: any
    retries: 1
    template: "{{{{ completion }}}}"
    choices: {choices}
  hung:
    endpoint: {endpoints["hang"].url}
    model: any
    timeout_s: 1
    template: "{{{{ completion }}}}"
    choices: {choices}
  slow:
    endpoint: {endpoints["cancel"].url}
    model: any
    timeout_s: 60
    template: "{{{{ completion }}}}"
    choices: {choices}
"""
    running = start_server(
        tmp_path_factory.mktemp("judges"), "--metrics-port", "0", config=config, env={"TEST_JUDGE_KEY": "sk-test-123"}
    )
    yield running
    stop_server(running)


def score(server: RunningServer, samples: list, *rewards: reward_pb2.RewardSpec, timeout: float = 60):
    return server.stub().Score(reward_pb2.ScoreRequest(samples=samples, rewards=list(rewards)), timeout=timeout)


def spec(name: str, **params) -> reward_pb2.RewardSpec:
    out = reward_pb2.RewardSpec(name=name)
    out.params.update(params)
    return out


def plain(completion: str, prompt: str = "Where to go?", **fields: str) -> reward_pb2.Sample:
    return reward_pb2.Sample(completion=completion, prompt_text=prompt, fields=fields)


def notes(result: reward_pb2.RewardScores) -> dict[int, tuple[str, int]]:
    return {n.sample_index: (n.reason, n.kind) for n in result.notes}


def test_catalogue_lists_judges_with_fields_endpoint_model_and_mode(server: RunningServer, endpoints: dict) -> None:
    rewards = {r.name: r for r in server.stub().ListRewards(reward_pb2.ListRewardsRequest()).rewards}
    fixed = rewards["fixed"]
    assert list(fixed.fields) == ["city"]  # the template's own variable; prompt and completion are the judge's
    assert (fixed.model_id, fixed.device, fixed.available) == ("fixed", endpoints["stand_in"].url, True)
    assert "choices A=1, B=0; score expected" in fixed.description
    assert {p.name for p in fixed.params} == {"score", "max_tokens"}
    assert {p.name for p in rewards["rated"].params} == {"max_tokens"}  # number mode has no score choice
    assert "rubric of 2 criteria" in rewards["rubric"].description
    assert "warning" in server.log().lower() and "judge down" in server.log()  # unreachable at start: a warning


def test_scores_from_logprobs_and_sends_the_documented_request(server: RunningServer, endpoints: dict) -> None:
    stand_in: StandIn = endpoints["stand_in"]
    before = len(stand_in.bodies)
    result = score(server, [plain("Rome", city="Rome"), plain("Rome", city="Rome")], spec("fixed")).results[0]
    expected = 0.8 / (0.8 + 0.15)  # the labels' mass renormalised; "x" is no label
    assert result.scores == pytest.approx([expected, expected], rel=1e-12)
    assert list(result.extra_columns[0].values) == ["A", "A"]
    sent = stand_in.bodies[before:]
    assert len(sent) == 1  # two identical rendered prompts in one batch: one call
    body = sent[0]
    assert body["messages"] == [{"role": "user", "content": "Q: Where to go? A: Rome City: Rome"}]
    assert (body["temperature"], body["logprobs"], body["top_logprobs"]) == (0, True, 20)
    assert body["structured_outputs"] == {"choice": ["A", "B"]}
    assert stand_in.headers[before]["Authorization"] == "Bearer sk-test-123"  # the key from the environment
    argmax = score(server, [plain("Rome", city="Rome")], spec("fixed", score="argmax")).results[0]
    assert list(argmax.scores) == [1.0]
    assert stand_in.bodies[-1]["max_tokens"] == 16  # the judge's default
    score(server, [plain("Rome", city="Rome")], spec("fixed", max_tokens=5))
    assert stand_in.bodies[-1]["max_tokens"] == 5  # a request's own max_tokens param reaches the endpoint


def test_a_field_the_template_uses_is_required(server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as err:
        score(server, [plain("Rome", city="Rome"), plain("Paris")], spec("fixed"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[1]" in err.value.details() and "'city'" in err.value.details()


def test_dead_endpoint_is_nan_with_a_note_and_other_rewards_still_score(server: RunningServer) -> None:
    response = score(server, [plain("<answer>4</answer>"), plain("x")], spec("down"), spec("xml_tag_count"))
    down, cpu = response.results
    assert all(math.isnan(s) for s in down.scores)
    for reason, kind in notes(down).values():
        assert kind == reward_pb2.NOTE_KIND_UNAVAILABLE
        assert reason.startswith("judge down: endpoint http://127.0.0.1:") and "unreachable" in reason
    assert down.counts.unavailable == 2 and down.counts.scored == 0
    assert not any(math.isnan(s) for s in cpu.scores) and cpu.counts.scored == 2


def test_hung_endpoint_is_cut_at_the_deadline(server: RunningServer, endpoints: dict) -> None:
    result = score(server, [plain("a"), plain("b")], spec("hung")).results[0]
    assert all(math.isnan(s) for s in result.scores)
    for reason, kind in notes(result).values():
        assert kind == reward_pb2.NOTE_KIND_TIME_LIMIT
        assert reason == "judge hung: no answer within 1 s (the judge's timeout_s)"
    assert endpoints["hang"].accepted >= 2


def test_a_cancelled_call_cancels_its_judge_calls(server: RunningServer, endpoints: dict) -> None:
    hang: Hang = endpoints["cancel"]
    accepted, dropped = hang.accepted, hang.dropped  # the start-up probe's connection came and went
    with pytest.raises(grpc.RpcError) as err:
        score(server, [plain("a"), plain("b"), plain("c")], spec("slow"), timeout=1.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 10
    while hang.dropped < dropped + 3 and time.monotonic() < deadline:  # the judge's own timeout_s is 60 s
        time.sleep(0.05)
    assert (hang.accepted - accepted, hang.dropped - dropped) == (3, 3)


def test_unusable_answers_are_reward_errors_naming_the_answer(server: RunningServer) -> None:
    prose = score(server, [plain("a")], spec("prose")).results[0]
    assert math.isnan(prose.scores[0])
    ((reason, kind),) = notes(prose).values()
    assert kind == reward_pb2.NOTE_KIND_REWARD_ERROR
    assert reason == "judge prose: the answer 'Maybe, it depends.' is none of the labels 'A', 'B'"
    expected = score(server, [plain("a")], spec("prose", score="expected")).results[0]
    ((reason, kind),) = notes(expected).values()
    assert kind == reward_pb2.NOTE_KIND_REWARD_ERROR and "no label among the first token's top logprobs" in reason


def test_number_mode_maps_the_number_into_the_range(server: RunningServer) -> None:
    result = score(server, [plain("fine"), plain("NONUMBER")], spec("rated")).results[0]
    assert result.scores[0] == pytest.approx((7 - 1) / (10 - 1), rel=1e-12)
    assert math.isnan(result.scores[1])
    assert notes(result)[1] == ("judge rated: no number in the answer 'no idea'", reward_pb2.NOTE_KIND_REWARD_ERROR)


def test_rubric_is_the_weighted_mean_of_its_criteria(server: RunningServer, endpoints: dict) -> None:
    result = score(server, [plain("x")], spec("rubric")).results[0]
    assert result.scores[0] == pytest.approx((3 * 0.9 + 1 * 0.3) / 4, rel=1e-12)
    assert list(result.extra_columns[0].values) == ["helpful: A; brief: B"]
    argmax = score(server, [plain("x")], spec("rubric", score="argmax")).results[0]
    assert argmax.scores[0] == pytest.approx((3 * 1.0 + 1 * 0.0) / 4)


def test_concurrency_limit_and_retries_under_load(server: RunningServer, endpoints: dict) -> None:
    stand_in: StandIn = endpoints["stand_in"]
    stand_in.max_in_flight = 0
    batches = [[plain(f"answer {caller}-{i}") for i in range(3)] for caller in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda b: score(server, b, spec("busy")).results[0], batches))
    expected = 0.8 / 0.95
    for result in results:  # every prompt was refused once with 503 and retried
        assert result.scores == pytest.approx([expected] * 3, rel=1e-12)
    assert stand_in.max_in_flight == 2  # 12 distinct prompts, 4 callers, max_concurrency 2


def test_a_rate_limit_429_is_retried(server: RunningServer, endpoints: dict) -> None:
    stand_in: StandIn = endpoints["stand_in"]
    before = stand_in.calls
    result = score(server, [plain("x"), plain("y")], spec("limited")).results[0]
    assert result.scores == pytest.approx([0.8 / 0.95] * 2, rel=1e-12) and not result.notes
    assert stand_in.calls - before == 4  # each prompt: 429 once, then answered


def test_judge_metrics(server: RunningServer) -> None:
    port = re.search(r"metrics on http://127.0.0.1:(\d+)/metrics", server.log()).group(1)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert re.search(r'reward_judge_calls_total\{judge="down",outcome="unreachable"\} [1-9]', text)
    assert re.search(r'reward_judge_errors_total\{judge="hung",kind="timeout"\} [1-9]', text)
    # Connection errors are retried (``down`` has retries: 1) and counted, as are 503 and 429 answers.
    assert re.search(r'reward_judge_retries_total\{judge="down"\} [1-9]', text)
    assert re.search(r'reward_judge_retries_total\{judge="busy"\} [1-9]', text)
    assert re.search(r'reward_judge_retries_total\{judge="limited"\} [1-9]', text)
    assert re.search(r'reward_judge_calls_total\{judge="fixed",outcome="ok"\} [1-9]', text)
    assert re.search(r'reward_judge_tokens_total\{judge="fixed",type="prompt"\} [1-9]', text)
    assert 'reward_judge_call_seconds_count{judge="fixed"}' in text
    assert 'reward_judge_calls_in_flight{judge="fixed"} 0.0' in text


BAD_CONFIGS = {
    "unknown key": ("tempalte: x", "judges.j: unknown key 'tempalte' (did you mean 'template'?)"),
    "template": ('template: "{{ completion "\n    choices: {"A": 1}', "judges.j: the template does not parse"),
    "empty choices": ("template: x\n    choices: {}", "judges.j.choices must be a non-empty mapping"),
    "non-numeric": ('template: x\n    choices: {"A": high}', "judges.j.choices['A'] must be a finite number"),
    "unknown filter": (
        'template: "{{ completion | nosuch }}"\n    choices: {"A": 1}',
        "judges.j: the template does not parse (line 1): No filter named 'nosuch'",
    ),
    "reserved conversation name": (
        'template: x\n    choices: {"A": 1}\n    conversation_variable: completion',
        "judges.j.conversation_variable 'completion' would hide the template variable",
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_judge_config_exits_2_naming_the_judge(case: str, tmp_path: Path) -> None:
    entry, message = BAD_CONFIGS[case]
    config = tmp_path / "bad.yaml"
    config.write_text(f"judges:\n  j:\n    endpoint: http://127.0.0.1:1/v1\n    model: m\n    {entry}\n")
    done = run_module("reward_server", "--config", str(config), "--port", "0", timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_example_configs_load() -> None:
    """configs/judges/: the server config's judge parses (fields from its template) and the recipe validates."""
    from reward_server.config import load_config
    from trainer_client.recipes import load_recipe

    judges = REPO / "configs" / "judges"
    spec = load_config(judges / "server_tourism_de.yaml").judges["helpfulness_de"]
    assert spec.fields == ("answer",) and spec.criteria[0].choices == {"A": 1.0, "B": 0.0}
    recipe = load_recipe(judges / "seed001_tourism_de_judge.yaml")
    assert recipe.rewards[0].name == "helpfulness_de"
