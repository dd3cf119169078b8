"""The remote code engines (SandboxFusion, Piston) against small HTTP servers on loopback.

Neither engine can run on these machines (both are Docker images: SandboxFusion's, and Piston's privileged
container), so the servers here are stand-ins written from each engine's documented API, run in this test's
process: SandboxFusion's ``POST /run_code`` (``sandbox/server/sandbox_api.py`` of bytedance/SandboxFusion: the
request verl sends, ``RunCodeResponse`` with ``compile_result``/``run_result``) and Piston's ``POST
/api/v2/execute`` (engineer-man/piston's readme: ``run``/``compile`` stages with ``status`` RE/SG/TO/OL/XX, 400 with
a ``message`` for a refused request, limits capped by the server's configuration). They run the programs with
this machine's python and g++ outside any sandbox: only the hand-written shipped solutions are sent to them. The
reward server is the real one, a process, with the real engine clients; only the engines are stand-ins. The
clients alone, in the test's process, are tested in ``test_code_remote_clients.py`` against the same stand-ins.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import REPO, RunningServer, start_server, stop_server

from trainer_client.client import RewardClient
from trainer_client.outcomes import Outcome

PROBLEMS = {p["id"]: p for p in map(json.loads, (REPO / "reward_server/code/problems.jsonl").read_text().splitlines())}
#: Piston's default configured maxima (ms), except the compile ones: 30 s, as the README tells operators to set.
PISTON_LIMITS = {"run_timeout": 3000, "compile_timeout": 30000, "run_cpu_time": 3000, "compile_cpu_time": 30000}
SF_LANGUAGES = {"python", "cpp", "nodejs", "go", "java", "rust"}  # part of SandboxFusion's Language literal


def run_program(language: str, code: str, stdin: str, run_s: float, compile_s: float) -> dict[str, Any]:
    """Compile (C++) and run a program: ``{"compile": ..., "run": ...}`` with status, code, stdout, stderr, time."""
    with tempfile.TemporaryDirectory() as work:
        out: dict[str, Any] = {"compile": None}
        if language == "cpp":
            Path(work, "main.cpp").write_text(code)
            built = subprocess.run(
                ["g++", "-O1", "-o", f"{work}/main", f"{work}/main.cpp"],
                capture_output=True,
                text=True,
                timeout=compile_s,
            )
            out["compile"] = {
                "status": "Finished",
                "code": built.returncode,
                "stdout": built.stdout,
                "stderr": built.stderr,
            }
            if built.returncode:
                return out
            argv = [f"{work}/main"]
        else:
            Path(work, "main.py").write_text(code)
            argv = [sys.executable, f"{work}/main.py"]
        start = time.monotonic()
        try:
            ran = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=run_s)
            out["run"] = {"status": "Finished", "code": ran.returncode, "stdout": ran.stdout, "stderr": ran.stderr}
        except subprocess.TimeoutExpired as exc:
            out["run"] = {"status": "TimeLimitExceeded", "code": None, "stdout": exc.stdout or "", "stderr": ""}
        out["run"]["time"] = time.monotonic() - start
        return out


class FakeEngine(ThreadingHTTPServer):
    """An HTTP server on loopback that records every request and answers in a ``mode`` the test sets."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.requests: list[tuple[str, dict]] = []
        self.mode = "ok"
        self.failures_left = 0  # "flaky" mode: how many 504s before answering
        self.delay_s = 3.0  # "slow" mode: seconds before answering
        #: Piston's configured maxima (PISTON_RUN_TIMEOUT, ...): what the README tells operators to set.
        self.limits = dict(PISTON_LIMITS)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):  # a client that gave up: fine
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeEngine
    misshapen: ClassVar[dict[str, Any]] = {}

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def reply(self, status: int, body: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, request))
        mode = self.server.mode
        if mode == "http500":
            return self.reply(500, b"Internal Server Error")
        if mode == "garbage":
            return self.reply(200, b"<html>proxy error</html>")
        if mode == "slow":
            time.sleep(self.server.delay_s)
        if mode == "misshapen":  # JSON, but a field of the wrong type
            return self.reply(200, self.misshapen)
        if mode == "flaky" and self.server.failures_left > 0:
            self.server.failures_left -= 1
            return self.reply(504, b"Gateway Timeout")
        self.answer(request)

    def answer(self, request: dict) -> None:
        raise NotImplementedError


class SandboxFusionHandler(_Handler):
    """``POST /run_code`` as SandboxFusion's sandbox_api.py answers it (FastAPI: 422 for a malformed request)."""

    misshapen: ClassVar[dict[str, Any]] = {
        "status": "Success",
        "compile_result": None,
        "run_result": {"status": "Finished", "return_code": 0, "stdout": "1\n", "execution_time": "fast"},
    }

    def answer(self, request: dict) -> None:
        if self.path != "/run_code":
            return self.reply(404, {"detail": "Not Found"})
        fields = {
            "compile_timeout",
            "run_timeout",
            "memory_limit_MB",
            "code",
            "stdin",
            "language",
            "files",
            "fetch_files",
        }
        if (
            not isinstance(request.get("code"), str)
            or request.get("language") not in SF_LANGUAGES
            or set(request) - fields
        ):
            return self.reply(422, {"detail": [{"msg": "validation error"}]})
        if self.server.mode == "sandbox_error":
            return self.reply(
                200,
                {
                    "status": "SandboxError",
                    "message": "runner crashed",
                    "compile_result": None,
                    "run_result": None,
                    "files": {},
                },
            )
        out = run_program(
            request["language"],
            request["code"],
            request["stdin"] or "",
            request["run_timeout"],
            request["compile_timeout"],
        )

        def result(stage: dict | None) -> dict | None:
            if stage is None:
                return None
            return {
                "status": stage["status"],
                "execution_time": stage.get("time", 0.1),
                "return_code": stage["code"],
                "stdout": stage["stdout"],
                "stderr": stage["stderr"],
            }

        compiled, ran = result(out["compile"]), result(out.get("run"))
        failed = (compiled and compiled["return_code"]) or (ran and (ran["status"] != "Finished" or ran["return_code"]))
        self.reply(
            200,
            {
                "status": "Failed" if failed else "Success",
                "message": "",
                "compile_result": compiled,
                "run_result": ran,
                "executor_pod_name": None,
                "files": {},
            },
        )


class PistonHandler(_Handler):
    """``POST /api/v2/execute`` as Piston's v2.js answers it, with its default configured limits."""

    runtimes: ClassVar[dict[str, str]] = {"python": "3.12.0", "c++": "10.2.0"}
    misshapen: ClassVar[dict[str, Any]] = {"run": {"stdout": "1\n", "code": 0, "status": None, "wall_time": "fast"}}
    output_max_size = 1024

    def answer(self, request: dict) -> None:
        if self.path != "/api/v2/execute":
            return self.reply(404, {"message": "Not Found"})
        language = request.get("language")
        if language not in self.runtimes or not isinstance(request.get("version"), str):
            return self.reply(400, {"message": f"{language}-{request.get('version')} runtime is unknown"})
        for name, limit in self.server.limits.items():
            if request.get(name) and request[name] > limit:
                return self.reply(400, {"message": f"{name} cannot exceed the configured limit of {limit}"})
        if self.server.mode == "internal":
            stage = {
                "stdout": "",
                "stderr": "",
                "output": "",
                "code": None,
                "signal": None,
                "message": "isolate failed",
                "status": "XX",
            }
            return self.reply(200, {"language": language, "version": self.runtimes[language], "run": stage})
        ours = "cpp" if language == "c++" else "python"
        out = run_program(
            ours,
            request["files"][0]["content"],
            request.get("stdin", ""),
            request["run_timeout"] / 1000,
            request.get("compile_timeout", 10000) / 1000,
        )

        def stage(step: dict) -> dict:
            status = None
            if step["status"] == "TimeLimitExceeded":
                status = "TO"
            elif len(step["stdout"]) > self.output_max_size:
                status = "OL"
            elif step["code"]:
                status = "RE"
            stdout = step["stdout"][: self.output_max_size]
            return {
                "stdout": stdout,
                "stderr": step["stderr"],
                "output": stdout + step["stderr"],
                "code": step["code"],
                "signal": "SIGKILL" if status in ("TO", "OL") else None,
                "message": None,
                "status": status,
                "cpu_time": 10,
                "wall_time": round(step.get("time", 0.01) * 1000),
                "memory": 1_000_000,
            }

        body: dict[str, Any] = {"language": language, "version": self.runtimes[language]}
        if out["compile"] is not None:
            body["compile"] = stage(out["compile"])
        body["run"] = stage(out["run"]) if "run" in out else body["compile"]  # Piston: run = compile when it failed
        self.reply(200, body)


@pytest.fixture(scope="module")
def sandboxfusion() -> Iterator[FakeEngine]:
    engine = FakeEngine(SandboxFusionHandler)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def piston() -> Iterator[FakeEngine]:
    engine = FakeEngine(PistonHandler)
    yield engine
    engine.shutdown()


@pytest.fixture(autouse=True)
def answer_normally(sandboxfusion: FakeEngine, piston: FakeEngine) -> None:
    for engine in (sandboxfusion, piston):
        engine.mode, engine.delay_s = "ok", 3.0
        engine.requests.clear()
        engine.limits = dict(PISTON_LIMITS)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sandboxfusion: FakeEngine, piston: FakeEngine
) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("remote"),
        "--workers", "2",
        "--code-engine", "sandboxfusion",
        "--sandboxfusion-url", sandboxfusion.url,
        "--piston-url", piston.url,
    )  # fmt: skip
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[RewardClient]:
    with RewardClient(server.address, deadline_s=120) as reward_client:
        yield reward_client


def completion_of(code: str, language: str) -> str:
    return f"Here it is.\n```{language}\n{code}```\n"


#: (problem, solution: "reference" or a wrong one's kind): a stdin, a function-call and a C++ problem, each way to fail.
CASES = [
    ("sum_two", "reference"),
    ("sum_two", "wrong answer"),
    ("gcd_pairs", "runtime error"),
    ("prefix_sums", "time limit"),
    ("two_sum", "reference"),
    ("two_sum", "wrong answer"),
    ("word_lengths", "reference"),
    ("sum_two_cpp", "reference"),
    ("sum_two_cpp", "compile error"),
]


def case_samples() -> tuple[list[dict], list[float]]:
    samples, expected = [], []
    for pid, what in CASES:
        problem = PROBLEMS[pid]
        info = problem["verification_info"]
        total = len(info["test_cases"])
        if what == "reference":
            code, passes = problem["reference"], total
        else:
            wrong = next(w for w in problem["wrong"] if w["kind"] == what)
            code, passes = wrong["code"], wrong["strict_passes"]
        samples.append({"completion": completion_of(code, info["language"]), "fields": {"verification_info": info}})
        expected.append(passes / total)
    return samples, expected


@pytest.mark.parametrize("engine", ["", "piston"])
def test_remote_engines_score_the_shipped_problems_as_the_local_sandbox(
    client: RewardClient, sandboxfusion: FakeEngine, piston: FakeEngine, engine: str
) -> None:
    """The server's own engine (sandboxfusion here) and Piston by the reward's param: the hand-counted numbers."""
    samples, expected = case_samples()
    result = client.score(samples, [{"name": "code_pass_rate", "params": {"time_limit_s": 1.0, "engine": engine}}])
    scores = result.rewards[0]
    assert scores.scores == pytest.approx(expected)
    verdicts = scores.extra_columns["code_verdicts"]
    assert verdicts[2] == "2/3 passed; #3 runtime error"
    assert verdicts[3] == "0/3 passed; #1-#3 time limit"
    assert verdicts[8] == "0/3 passed; #1-#3 compile error"
    used, other = (piston, sandboxfusion) if engine == "piston" else (sandboxfusion, piston)
    assert used.requests and not other.requests
    # Grading stays on the server: no expected output is ever sent (sum_two's 2000000000 is in no input or code).
    assert not any("2000000000" in json.dumps(body) for _, body in used.requests)


def test_the_requests_are_the_documented_ones(
    client: RewardClient, sandboxfusion: FakeEngine, piston: FakeEngine
) -> None:
    cpp = PROBLEMS["sum_two_cpp"]
    sample = {
        "completion": completion_of(cpp["reference"], "cpp"),
        "fields": {"verification_info": cpp["verification_info"]},
    }
    params = {"time_limit_s": 2.0, "memory_mb": 256, "max_tests": 1}
    client.score(
        [sample],
        [{"name": "code_passed", "params": params}, {"name": "code_passed", "params": {**params, "engine": "piston"}}],
    )
    ((path, body),) = sandboxfusion.requests
    assert path == "/run_code"
    assert body == {
        "compile_timeout": 30.0, "run_timeout": 2.0, "code": cpp["reference"], "stdin": "1 2\n",
        "memory_limit_MB": 256, "language": "cpp", "files": {}, "fetch_files": [],
    }  # fmt: skip
    ((path, body),) = piston.requests
    assert path == "/api/v2/execute"
    assert body["language"] == "c++" and body["version"] == "*" and body["stdin"] == "1 2\n"
    assert body["files"] == [{"name": "main.cpp", "content": cpp["reference"]}]
    assert body["run_timeout"] == body["run_cpu_time"] == 2000 and body["run_memory_limit"] == 256 * 1024 * 1024
    assert body["compile_timeout"] == body["compile_cpu_time"] == 30000


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("http500", "answered HTTP 500"),
        ("sandbox_error", "sandbox error: runner crashed"),
        ("garbage", "not JSON"),
    ],
)
def test_an_engine_that_fails_is_unavailable_never_zero(
    client: RewardClient, sandboxfusion: FakeEngine, mode: str, why: str
) -> None:
    sandboxfusion.mode = mode
    samples, _ = case_samples()
    result = client.score(samples[:3], ["code_pass_rate", "open_r1_code"])
    for scores in result.rewards:
        assert all(math.isnan(s) for s in scores.scores), scores
        assert all(scores.kinds[i] == Outcome.UNAVAILABLE for i in range(3))
        assert all("engine sandboxfusion" in note and why in note for note in scores.notes.values()), scores.notes
        assert scores.counts.unavailable == 3 and scores.counts.scored == 0


def test_piston_refusals_and_internal_errors_are_unavailable(client: RewardClient, piston: FakeEngine) -> None:
    """Piston refuses a compile limit above its configured one (30 s asked, Piston's default 10 s allowed)."""
    piston.limits["compile_timeout"] = 10000
    cpp = PROBLEMS["sum_two_cpp"]
    py = PROBLEMS["sum_two"]
    samples = [
        {
            "completion": completion_of(cpp["reference"], "cpp"),
            "fields": {"verification_info": cpp["verification_info"]},
        },
        {
            "completion": completion_of(py["reference"], "python"),
            "fields": {"verification_info": py["verification_info"]},
        },
    ]
    result = client.score(samples, [{"name": "code_pass_rate", "params": {"engine": "piston", "time_limit_s": 1.0}}])
    scores = result.rewards[0]
    assert math.isnan(scores.scores[0]) and scores.kinds[0] == Outcome.UNAVAILABLE
    assert "compile_timeout cannot exceed the configured limit of 10000" in scores.notes[0]
    assert scores.scores[1] == 1.0  # Python has no compile stage: no compile limit is sent
    piston.mode = "internal"
    result = client.score(
        samples[1:], [{"name": "code_pass_rate", "params": {"engine": "piston", "time_limit_s": 1.0}}]
    )
    assert result.rewards[0].kinds[0] == Outcome.UNAVAILABLE and "internal error" in result.rewards[0].notes[0]
