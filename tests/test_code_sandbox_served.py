"""The sandbox as the server runs it: abuse through real requests, cancellation, per-sample budgets, a SIGKILLed
server, and the self-test refusing where bwrap cannot start (ListRewards says why).

Servers are real processes (``conftest.start_server``); hostile programs name their processes with a unique token
(see ``test_code_sandbox_escape``) so that a leftover one can be found on the host.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import grpc
import psutil
import pytest
from conftest import REPO, RunningServer, start_server, stop_server
from test_code_sandbox_escape import leftovers, named, token

from reward_server import cancellation
from reward_server.code.engines import get_engine, startup
from reward_server.code.execution import RunLimits, TestInput
from reward_server.code.sandbox import LocalEngine
from reward_server.registry import REGISTRY
from reward_server.settings import CodeSettings
from reward_server.time_limit import SampleTimeout, time_budget
from trainer_client.client import RetryPolicy, RewardClient
from trainer_client.errors import RewardServiceError

SUM_TWO = next(
    json.loads(line)
    for line in (REPO / "reward_server/code/problems.jsonl").read_text().splitlines()
    if json.loads(line)["id"] == "sum_two"
)
INFO = SUM_TWO["verification_info"]
TESTS = len(INFO["test_cases"])
CODE_REWARDS = {"code_pass_rate", "code_passed", "open_r1_code", "open_r1_binary_code", "open_r1_code_format"}


def completion(code: str) -> str:
    return f"<think>\nok\n</think>\n<answer>\n```python\n{code}```\n</answer>"


def sample(code: str) -> dict:
    return {"prompt": "add", "completion": completion(code), "fields": {"verification_info": INFO}}


def wait_gone(tok: str, within_s: float) -> list[str]:
    """Processes named ``tok`` still there after up to ``within_s`` seconds (empty once they are all gone)."""
    deadline = time.monotonic() + within_s
    while (left := leftovers(tok)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_running(tok: str, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while not leftovers(tok):
        assert time.monotonic() < deadline, f"the program named {tok} never started"
        time.sleep(0.05)


# ----------------------------------------------------------------------------------- engine-level lifecycle


def test_a_sample_budget_kills_its_sandbox() -> None:
    """The worker's per-sample budget (SIGALRM → SampleTimeout) interrupts run(); the sandbox goes with it."""
    tok = token()
    with pytest.raises(SampleTimeout), time_budget(1.0):
        LocalEngine().run("python", named(tok, "import time\ntime.sleep(100)\n"), [TestInput()], RunLimits(60.0))
    assert leftovers(tok) == []


def test_a_cancelled_request_kills_its_sandbox() -> None:
    """The worker sees the request's cancel flag while it waits on the sandbox, and kills it."""
    board = cancellation.CancelBoard()
    cancellation.attach(board.flags)
    slot = board.open()
    tok = token()
    threading.Timer(1.0, board.cancel, (slot,)).start()
    try:
        with pytest.raises(cancellation.RequestCancelled), cancellation.watching(slot):
            LocalEngine().run("python", named(tok, "import time\ntime.sleep(100)\n"), [TestInput()], RunLimits(60.0))
    finally:
        cancellation.attach(None)
    assert leftovers(tok) == []


# ----------------------------------------------------------------------------------- a served sandbox


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # No per-sample budget: only the sandbox's own limits and cancellation end a program here.
    running = start_server(tmp_path_factory.mktemp("sandbox"), "--workers", "2", config="sample_timeout_s: 0\n")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[RewardClient]:
    with RewardClient(server.address, deadline_s=120) as reward_client:
        yield reward_client


ABUSE = {
    "fork bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "time limit",
    ),
    "sleep 100": ("import time\ntime.sleep(100)\n", "time limit"),
    "busy loop": ("while True:\n    pass\n", "time limit"),
    "2 GiB": ("x = bytearray(2 << 30)\n", "memory limit"),
    "50 MiB flood": ("import sys\nfor _ in range(50):\n    sys.stdout.write('y' * (1 << 20))\n", "output limit"),
    "100 MiB file": ("f = open('big', 'wb')\nfor _ in range(100):\n    f.write(b'x' * (1 << 20))\n", "runtime error"),
    "setsid orphan": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(100)\n"
        "    os._exit(0)\nprint(open('/etc/shadow').read())\n",
        "runtime error",
    ),
    "harness memory": ("import os\nprint(open('/proc/%d/mem' % os.getppid(), 'rb').read(9))\n", "runtime error"),
    "host loopback": ("import socket\nsocket.create_connection(('127.0.0.1', 50051))\n", "runtime error"),
    "exit early": ("import os\nos._exit(0)\n", "wrong answer"),
}


def test_abuse_scores_its_verdict_leaves_nothing_and_the_server_serves_on(client: RewardClient) -> None:
    tokens = {case: token() for case in ABUSE}
    samples = [sample(named(tokens[case], code)) for case, (code, _) in ABUSE.items()]
    result = client.score(samples, [{"name": "code_pass_rate", "params": {"time_limit_s": 1.0, "memory_mb": 256}}])
    [rate] = result.rewards
    verdicts = rate.extra_columns["code_verdicts"]
    for i, (case, (_, verdict)) in enumerate(ABUSE.items()):
        assert rate.scores[i] == 0.0, case
        assert verdicts[i].startswith(f"0/{TESTS} passed; #1-#{TESTS} {verdict}"), (case, verdicts[i])
        assert wait_gone(tokens[case], 0.0) == [], case
    # The same server serves the next request.
    again = client.score([sample(SUM_TWO["reference"])], ["code_passed"])
    assert again.rewards[0].scores == [1.0]


def test_a_request_past_its_deadline_kills_its_sandboxes(server: RunningServer) -> None:
    tok = token()
    errors: list[RewardServiceError] = []

    def score() -> None:
        with RewardClient(server.address, deadline_s=8.0) as impatient:
            try:
                impatient.score(
                    [sample(named(tok, "import time\ntime.sleep(100)\n"))],
                    [{"name": "code_passed", "params": {"time_limit_s": 60.0}}],
                )
            except RewardServiceError as exc:
                errors.append(exc)

    call = threading.Thread(target=score, daemon=True)
    call.start()
    wait_running(tok, within_s=8.0)  # the program runs before the deadline passes
    call.join(30)
    assert [e.code for e in errors] == [grpc.StatusCode.DEADLINE_EXCEEDED]
    # Well before its 60 s limit per test (×4 tests): only the cancellation can have ended it.
    assert wait_gone(tok, 20.0) == []


def test_a_sigkilled_worker_leaves_no_sandbox_and_the_server_serves_on(server: RunningServer, client) -> None:
    tok = token()
    errors: list[RewardServiceError] = []
    once = RewardClient(server.address, deadline_s=120, retry=RetryPolicy(max_attempts=1))  # a retry would rerun it

    def score() -> None:
        try:
            once.score(
                [sample(named(tok, "import time\ntime.sleep(100)\n"))],
                [{"name": "code_passed", "params": {"time_limit_s": 60.0}}],
            )
        except RewardServiceError as exc:  # its worker died under it
            errors.append(exc)

    call = threading.Thread(target=score, daemon=True)
    call.start()
    wait_running(tok)
    bwraps = [p for p in psutil.Process(server.process.pid).children(recursive=True) if p.name() == "bwrap"]
    [outer] = [p for p in bwraps if p.parent().name() != "bwrap"]  # the other one is its namespace's init
    worker = outer.parent()
    assert worker.ppid() == server.process.pid
    worker.kill()
    # bwrap dies with the worker that started it (--die-with-parent), and its namespace with it.
    assert wait_gone(tok, 20.0) == []
    call.join(60)
    once.close()
    assert [e.code for e in errors] == [grpc.StatusCode.UNAVAILABLE]  # "a scoring worker died; retry the request"
    again = client.score([sample(SUM_TWO["reference"])], ["code_passed"])  # on a fresh pool
    assert again.rewards[0].scores == [1.0]


def test_a_sigkilled_server_leaves_no_sandbox(tmp_path) -> None:
    running = start_server(tmp_path, "--workers", "1", config="sample_timeout_s: 0\n")
    tok = token()
    try:
        with RewardClient(running.address, deadline_s=600) as client:
            errors: list[BaseException] = []

            def score() -> None:
                try:
                    client.score(
                        [sample(named(tok, "import time\ntime.sleep(100)\n"))],
                        [{"name": "code_passed", "params": {"time_limit_s": 60.0}}],
                    )
                except RewardServiceError as exc:  # the server is gone: the call fails, as it should
                    errors.append(exc)

            call = threading.Thread(target=score, daemon=True)
            call.start()
            wait_running(tok)
            descendants = psutil.Process(running.process.pid).children(recursive=True)
            bwraps = [p for p in descendants if p.name() == "bwrap"]
            assert bwraps, "the sandbox runs under the server's worker"
            running.process.kill()
            running.process.wait()
            # Its worker notices within half a second (lifecycle.POLL_S); bwrap dies with it (--die-with-parent).
            assert wait_gone(tok, 20.0) == []
            assert [p for p in bwraps if alive(p)] == []
            call.join(30)
            assert len(errors) == 1
    finally:
        stop_server(running)


# ----------------------------------------------------------------------------------- refusing to start


def test_where_bwrap_cannot_start_list_rewards_says_why_and_how_to_fix(tmp_path) -> None:
    """``REWARD_SANDBOX_BWRAP=/bin/false`` simulates a host where bwrap fails (namespaces blocked): the self-test
    refuses, nothing falls back to running code unsandboxed, and every code reward says why."""
    running = start_server(tmp_path, "--workers", "0", env={"REWARD_SANDBOX_BWRAP": "/bin/false"})
    try:
        with RewardClient(running.address, deadline_s=60) as client:
            infos = {i.name: i for i in client.list_rewards()}
            with pytest.raises(RewardServiceError) as caught:
                client.score([sample(SUM_TWO["reference"])], ["code_passed"])
        log = running.log()
    finally:
        stop_server(running)
    for name in CODE_REWARDS:
        reason = infos[name].unavailable_reason
        assert not infos[name].available, name
        assert "the local code sandbox does not start" in reason, reason
        assert "user namespaces" in reason and "code_execution: false" in reason  # the fixes
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "the local code sandbox does not start" in caught.value.details
    assert "code rewards" in log and "unavailable" in log


def test_operators_can_switch_code_rewards_off() -> None:
    import reward_server.rewards  # noqa: F401 - registers the catalogue, code rewards included

    registry = REGISTRY.copy()
    reason = startup(CodeSettings(code_execution=False), registry)
    assert reason == "code execution is switched off on this server (code_execution: false)"
    for name in CODE_REWARDS:
        assert registry.unavailable_reason(name) == reason
    assert REGISTRY.unavailable_reason("code_passed") == ""  # only the registry it was given


def test_unsafe_mode_is_logged_loudly(caplog) -> None:
    import reward_server.rewards  # noqa: F401

    registry = REGISTRY.copy()
    with caplog.at_level(logging.WARNING):
        assert startup(CodeSettings(unsafe_run_code_without_sandbox=True), registry) == ""
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "NO sandbox" in caplog.records[0].getMessage()
    assert get_engine(code=CodeSettings(unsafe_run_code_without_sandbox=True)).name == "unsafe-local"
