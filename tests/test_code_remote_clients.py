"""The remote engines' clients in this process (``reward_server.code.remote``), against the stand-in SandboxFusion
and Piston servers of ``test_code_remote.py`` (see there why stand-ins): retries, failures, output limits, stop on
failure, cancellation, the local slots not held, the language table, and start-up without a URL."""

# ruff: noqa: F811 - the tests take test_code_remote's stand-in fixtures (imported below) by name
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import free_port
from test_code_remote import FakeEngine, answer_normally, piston, sandboxfusion  # noqa: F401 - its fixtures

from reward_server import cancellation
from reward_server.code.execution import EngineUnavailable, RunLimits, TestInput, Verdict
from reward_server.code.languages import LANGUAGES, Language
from reward_server.code.remote import PistonEngine, SandboxFusionEngine
from reward_server.code.sandbox.slots import server_slots
from reward_server.settings import CodeSettings


def test_gateway_timeouts_are_retried(sandboxfusion: FakeEngine) -> None:
    sandboxfusion.mode, sandboxfusion.failures_left = "flaky", 2
    run = SandboxFusionEngine(sandboxfusion.url).run("python", "print(input())", [TestInput("hi\n")], RunLimits())
    assert [(r.verdict, r.stdout) for r in run] == [(Verdict.OK, "hi\n")]
    assert len(sandboxfusion.requests) == 3


def test_unreachable_and_slow_engines_are_unavailable(sandboxfusion: FakeEngine) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    for engine in (SandboxFusionEngine(closed), PistonEngine(closed)):
        with pytest.raises(EngineUnavailable, match=f"{engine.name} at {closed}.* is unreachable"):
            engine.run("python", "print(1)", [TestInput()], RunLimits())
    sandboxfusion.mode = "slow"  # answers after 3 s; the client waits 0.2 + 0.2 + 1 s
    limits = RunLimits(time_limit_s=0.2, compile_time_limit_s=0.2)
    with pytest.raises(EngineUnavailable, match=r"sandboxfusion at .* did not answer within 1\.4 s"):
        SandboxFusionEngine(sandboxfusion.url, margin_s=1.0).run("python", "print(1)", [TestInput()], limits)


def test_piston_output_limit_and_a_function_that_never_returns(piston: FakeEngine) -> None:
    engine = PistonEngine(piston.url)
    limits = RunLimits(time_limit_s=2.0)
    (flood,) = engine.run("python", "print('x' * 5000)", [TestInput()], limits)
    assert flood.verdict is Verdict.OUTPUT_LIMIT  # Piston's stdout cap (1024 characters by default)
    exits = "import os\ndef add(a, b):\n    os._exit(0)\n"
    adds = "def add(a, b):\n    print('debug')\n    return [a + b]\n"
    (gone,) = engine.run("python", exits, [TestInput(fn_name="add", args=(1, 2))], limits)
    (added,) = engine.run("python", adds, [TestInput(fn_name="add", args=(1, 2))], limits)
    assert gone.verdict is Verdict.RUNTIME_ERROR and "exited before returning a result" in gone.stderr_tail
    assert (added.verdict, json.loads(added.stdout)) == (Verdict.OK, [3])  # its print went to stderr
    assert json.loads(piston.requests[-1][1]["stdin"]) == [1, 2]


def test_stop_on_failure_sends_no_more_tests(sandboxfusion: FakeEngine) -> None:
    tests = [TestInput("1\n"), TestInput("x\n"), TestInput("3\n")]
    runs = SandboxFusionEngine(sandboxfusion.url).run("python", "print(int(input()))", tests, RunLimits(), True)
    assert [r.verdict for r in runs] == [Verdict.OK, Verdict.RUNTIME_ERROR, Verdict.NOT_RUN]
    assert len(sandboxfusion.requests) == 2


def test_a_remote_engine_without_its_url_switches_the_code_rewards_off() -> None:
    """What the server's start-up does (engines.startup) when code_engine names a remote engine with no URL."""
    import reward_server.rewards  # noqa: F401 - registers the code rewards
    from reward_server.code.engines import startup
    from reward_server.registry import REGISTRY

    registry = REGISTRY.copy()
    reason = startup(CodeSettings(code_engine="sandboxfusion"), registry)
    assert reason == "sandboxfusion: no server configured (setting sandboxfusion_url, --sandboxfusion-url)"
    for name in ("code_pass_rate", "code_passed", "open_r1_code", "open_r1_binary_code", "open_r1_code_format"):
        assert registry.unavailable_reason(name) == reason
    assert (
        startup(CodeSettings(code_engine="sandboxfusion", sandboxfusion_url="http://sandbox:8080"), REGISTRY.copy())
        == ""
    )


def test_an_answer_of_an_unexpected_shape_is_unavailable(sandboxfusion: FakeEngine, piston: FakeEngine) -> None:
    """JSON, but not shaped as documented (a number sent as text): the engine's failure, never the reward's error."""
    for fake, engine in ((sandboxfusion, SandboxFusionEngine(sandboxfusion.url)), (piston, PistonEngine(piston.url))):
        fake.mode = "misshapen"
        with pytest.raises(EngineUnavailable, match=rf"^{engine.name}: unexpected answer \(ValueError: could not"):
            engine.run("python", "print(1)", [TestInput()], RunLimits())


@pytest.fixture
def cancel_slot() -> Iterator[tuple[cancellation.CancelBoard, int]]:
    """A request's cancel flag, watched in this thread (as a worker watches the request it scores)."""
    board = cancellation.CancelBoard()
    cancellation.attach(board.flags)
    slot = board.open()
    try:
        with cancellation.watching(slot):
            yield board, slot
    finally:
        cancellation.attach(None)


def test_a_cancelled_request_sends_no_more_tests(sandboxfusion: FakeEngine, cancel_slot: tuple) -> None:
    board, slot = cancel_slot
    sandboxfusion.mode, sandboxfusion.delay_s = "slow", 1.0
    engine = SandboxFusionEngine(sandboxfusion.url)
    tests = [TestInput(f"{i}\n") for i in range(6)]
    # One test at a time (stop_on_failure): cancelled while the first runs, the second is never sent.
    threading.Timer(0.5, board.cancel, (slot,)).start()
    with pytest.raises(cancellation.RequestCancelled):
        engine.run("python", "print(input())", tests, RunLimits(), stop_on_failure=True)
    assert len(sandboxfusion.requests) == 1
    # Four at a time: the wait ends at the cancellation, not at the answers in flight (due 1 s after they left),
    # and the test still queued behind them is never sent.
    board.flags[slot] = 0
    sandboxfusion.requests.clear()
    threading.Timer(1.5, board.cancel, (slot,)).start()
    started = time.monotonic()
    with pytest.raises(cancellation.RequestCancelled):
        engine.run("python", "print(input())", tests, RunLimits())
    assert time.monotonic() - started < 1.95
    time.sleep(1.5)  # the four in flight are answered meanwhile; nothing else is sent
    assert sorted(body["stdin"] for _, body in sandboxfusion.requests) == [f"{i}\n" for i in range(5)]


def test_a_remote_completion_does_not_wait_for_the_local_sandboxes_slots(sandboxfusion: FakeEngine) -> None:
    """code_max_concurrency counts this machine's sandboxes: a remote engine's work is not held back by them."""
    engine = SandboxFusionEngine(sandboxfusion.url)
    with server_slots(1).hold():  # every local slot taken (as by a running sandbox)
        runs = engine.run("python", "print(1)", [TestInput()], RunLimits())
    assert [(r.verdict, r.stdout) for r in runs] == [(Verdict.OK, "1\n")]


def test_a_language_is_one_table_entry_for_the_remote_engines_too(
    monkeypatch: pytest.MonkeyPatch, sandboxfusion: FakeEngine, piston: FakeEngine
) -> None:
    """Each engine's name for a language, its file name and whether it compiles all come from the language table."""
    cpp20 = Language(
        "cpp20",
        "solution.cc",
        run=("{exe}",),
        compile=("/usr/bin/g++", "-std=gnu++20", "-o", "{exe}", "{file}"),
        sandboxfusion="cpp",
        piston="c++",
    )
    monkeypatch.setitem(LANGUAGES, "cpp20", cpp20)
    add = "#include <iostream>\nint main() { int a, b; std::cin >> a >> b; std::cout << a + b; }\n"
    for engine in (SandboxFusionEngine(sandboxfusion.url), PistonEngine(piston.url)):
        [run] = engine.run("cpp20", add, [TestInput("1 2")], RunLimits(time_limit_s=2.0))
        assert (run.verdict, run.stdout) == (Verdict.OK, "3"), engine.name
    [(_, sent)] = sandboxfusion.requests
    assert sent["language"] == "cpp"
    [(_, sent)] = piston.requests
    assert sent["language"] == "c++" and sent["files"][0]["name"] == "solution.cc"
    assert sent["compile_timeout"] == 30000  # compiled: Piston is given the compile limit
    # An entry with no name for an engine is not sent to that engine.
    monkeypatch.setitem(LANGUAGES, "cobol", Language("cobol", "main.cob", run=("/usr/bin/cobc",), piston="cobol"))
    with pytest.raises(EngineUnavailable, match="sandboxfusion is not set up here for 'cobol'"):
        SandboxFusionEngine(sandboxfusion.url).run("cobol", "", [TestInput()], RunLimits())
