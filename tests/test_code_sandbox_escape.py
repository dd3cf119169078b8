"""The escape and abuse suite (issue 16 §7), against the real bubblewrap sandbox.

Each case runs a hostile program through :class:`LocalEngine` (the engine the server uses) with short limits, and
checks the verdict, that the attempt failed, and that no process of it is left: every program first names its
processes with a unique token (``prctl(PR_SET_NAME)``, inherited by its children), and the host is searched for
that token afterwards. ``tests/test_code_sandbox_served.py`` drives some of them through a real server.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import psutil
import pytest
from conftest import REPO

from reward_server.code.execution import RunLimits, TestInput, TestRun, Verdict
from reward_server.code.sandbox import LocalEngine
from reward_server.code.sandbox.engine import STARTUP_SLACK_S
from reward_server.code.sandbox.selftest import self_test

LIMITS = RunLimits(time_limit_s=1.0, memory_mb=256, output_bytes=1 << 20, compile_time_limit_s=30.0)


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    reason = self_test()
    assert reason is None, f"the sandbox must work on CI: {reason}"
    return LocalEngine()


def token() -> str:
    return "sbx" + uuid.uuid4().hex[:10]  # fits the 15 characters of a process name


def named(tok: str, source: str, language: str = "python") -> str:
    """``source`` run by processes named ``tok`` (so a leftover one can be found on the host)."""
    if language == "cpp":  # a static initializer: runs before main
        return f'#include <sys/prctl.h>\nstatic int named_by_test = prctl(15, "{tok}", 0, 0, 0);\n{source}'
    return f"import ctypes\nctypes.CDLL(None).prctl(15, {tok.encode()!r}, 0, 0, 0)\n{source}"


def leftovers(tok: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        info = process.info
        text = f"{info['name']} {' '.join(info['cmdline'] or [])}"
        if tok in text:
            found.append(f"{info['pid']} {info['status']} {text[:80]}")
    return found


def budget(limits: RunLimits, tests: int, compiled: bool) -> float:
    """The engine's wall-clock budget of one sandbox: past it, the engine's backstop would kill the sandbox."""
    return (limits.compile_time_limit_s if compiled else 0) + tests * (limits.time_limit_s + 0.2) + STARTUP_SLACK_S


def run(
    engine: LocalEngine, source: str, tests: int = 1, limits: RunLimits = LIMITS, language: str = "python", **kw
) -> tuple[list, float]:
    """Run a hostile ``source`` (named with a fresh token); assert it ended within its budget (the harness's own
    limits ended it, not the engine's backstop) and that nothing of it is left; the runs and seconds."""
    tok = token()
    started = time.monotonic()
    runs = engine.run(language, named(tok, source, language), [TestInput(**kw)] * tests, limits)
    elapsed = time.monotonic() - started
    assert leftovers(tok) == [], "processes left behind"
    assert elapsed < budget(limits, tests, language == "cpp"), f"{elapsed:.1f} s: over the sandbox's budget"
    return runs, elapsed


def test_loopback_listener_on_the_host_is_unreachable(engine) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    program = f"""
import socket
for family, address in ((socket.AF_INET, ("127.0.0.1", {port})), (socket.AF_INET6, ("::1", {port}))):
    try:
        s = socket.socket(family)
        s.settimeout(0.5)
        s.connect(address)
        print("connected", address)
    except OSError as exc:
        print("refused", exc.errno)
"""
    [result], _ = run(engine, program)
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert result.verdict == Verdict.OK
    assert result.stdout.split() == ["refused", "1", "refused", "1"]  # EPERM: seccomp refuses the socket itself


def test_secrets_of_the_host_are_absent(engine, tmp_path) -> None:
    secret = REPO / f".sandbox-secret-{uuid.uuid4().hex}"
    secret.write_text("TOPSECRET-" + secret.name)
    try:
        paths = [str(secret), "/etc/shadow", "/etc/passwd", "/root/.bashrc", str(REPO / "pyproject.toml")]
        program = f"""
for path in {paths!r}:
    try:
        print("read", path, open(path).read()[:40])
    except OSError as exc:
        print("absent", exc.errno)
"""
        [result], _ = run(engine, program)
    finally:
        secret.unlink()
    assert result.verdict == Verdict.OK
    assert "TOPSECRET" not in result.stdout
    assert result.stdout.split() == ["absent", "2"] * len(paths)  # ENOENT: not there at all


def test_writes_outside_the_work_dir_are_refused(engine) -> None:
    target = REPO / f".sandbox-write-{uuid.uuid4().hex}"
    program = f"""
import os
for path in ("/escape", "/usr/escape", "/etc/escape", "/dev/escape", "/dev/shm/escape", {str(target)!r}):
    try:
        open(path, "w").write("x")
        print("wrote", path)
    except OSError:
        print("refused")
open("inside", "w").write("x")
print("work dir", os.path.exists("inside"))
"""
    [result], _ = run(engine, program)
    assert result.verdict == Verdict.OK
    assert result.stdout.splitlines() == ["refused"] * 6 + ["work dir True"]
    assert not target.exists()


def test_fork_bomb_is_capped_and_ends_at_its_time_limit(engine) -> None:
    program = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    [result], _ = run(engine, program)
    assert result.verdict == Verdict.TIME_LIMIT


def test_process_limit_holds(engine) -> None:
    program = """
import os
r, w = os.pipe()
n = 0
for _ in range(500):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    n += 1
print(n)
"""
    [result], _ = run(engine, program)
    assert result.verdict == Verdict.OK
    assert 0 < int(result.stdout) < 32  # the sandbox's process limit (SandboxLimits.processes), init and harness in


def test_two_gib_allocation_is_a_memory_limit(engine) -> None:
    [result], _ = run(engine, "x = bytearray(2 << 30)\nprint(len(x))\n")
    assert result.verdict == Verdict.MEMORY_LIMIT


def test_two_gib_allocation_in_cpp_is_a_memory_limit(engine) -> None:
    program = (  # the size comes from stdin: with a constant, g++ -O2 may elide the allocation altogether
        '#include <cstdio>\n#include <cstring>\nint main() { long n; std::scanf("%ld", &n);\n'
        'char *p = new char[n]; std::memset(p, 1, n); std::printf("%d", p[n - 1]); }\n'
    )
    [result], _ = run(engine, program, language="cpp", stdin=str(2 << 30))
    assert result.verdict == Verdict.MEMORY_LIMIT
    assert "bad_alloc" in result.stderr_tail


@pytest.mark.parametrize(
    "program", ["while True:\n    pass\n", "import time\ntime.sleep(100)\n"], ids=["busy loop", "sleep 100"]
)
def test_busy_loop_and_sleep_end_at_the_time_limit(engine, program) -> None:
    [first, second], elapsed = run(engine, program, tests=2)
    assert (first.verdict, second.verdict) == (Verdict.TIME_LIMIT, Verdict.TIME_LIMIT)
    assert elapsed < 2 * LIMITS.time_limit_s + 5  # two tests' limits and start-up: nothing waited for 100 s


def test_busy_loop_in_cpp_ends_at_the_time_limit(engine) -> None:
    [result], elapsed = run(engine, "int main() { volatile long i = 0; for (;;) i++; }\n", language="cpp")
    assert result.verdict == Verdict.TIME_LIMIT
    assert elapsed < LIMITS.time_limit_s + 10  # the compile (a few seconds at most here), then 1 s of looping


def test_a_100_mib_file_is_refused(engine) -> None:
    program = "with open('big', 'wb') as f:\n    for _ in range(100):\n        f.write(b'x' * (1 << 20))\nprint('ok')\n"
    [result], _ = run(engine, program)
    assert result.verdict == Verdict.RUNTIME_ERROR
    assert "File too large" in result.stderr_tail
    assert "ok" not in result.stdout


def test_a_50_mib_stdout_flood_is_an_output_limit(engine) -> None:
    program = "import sys\nchunk = 'y' * (1 << 20)\nfor _ in range(50):\n    sys.stdout.write(chunk)\n"
    [result], _ = run(engine, program)
    assert result.verdict == Verdict.OUTPUT_LIMIT
    assert len(result.stdout) <= LIMITS.output_bytes


def test_setsid_and_an_orphan_do_not_outlive_their_test(engine) -> None:
    # The orphan sleeps on in its own session; the next test in the same sandbox must not see it, nor the host after.
    program = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(100)
    os._exit(0)
time.sleep(0.2)
print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
"""
    [first, second], _ = run(engine, program, tests=2)
    assert first.verdict == second.verdict == Verdict.OK
    # The second test sees only the namespace's init, the harness, itself and its own fresh orphan chain, which
    # is at most 2 processes: nothing the first test started is still there.
    first_pids, second_pids = eval(first.stdout), eval(second.stdout)
    assert first_pids[:2] == second_pids[:2] == [1, 2]
    assert not set(first_pids[2:]) & set(second_pids[2:])


def test_the_harness_memory_cannot_be_read(engine) -> None:
    program = """
import ctypes, os
harness = os.getppid()
paths = ("/proc/%d/mem" % harness, "/proc/%d/environ" % harness, "/proc/%d/fd/1" % harness, "/proc/1/mem")
for path in paths + ("/proc/1/fd/1",):  # the harness's stdout (its results) through the namespace's init
    try:
        open(path, "wb").write(b"x") if "/fd/" in path else open(path, "rb").read(16)
        print("read", path)
    except OSError as exc:
        print("refused", exc.errno)
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace", libc.ptrace(16, harness, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
buf = ctypes.create_string_buffer(16)
iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
print("process_vm_readv", libc.process_vm_readv(harness, iov, 1, iov, 1, 0), ctypes.get_errno())
"""
    [result], _ = run(engine, program)
    assert result.verdict == Verdict.OK
    lines = result.stdout.splitlines()
    assert all(line.startswith("refused") for line in lines[:5]), lines
    assert lines[5:] == ["ptrace -1 1", "process_vm_readv -1 1"]  # EPERM from the seccomp filter


def test_test_processes_are_not_dumpable(engine) -> None:
    """A Python test is forked from the non-dumpable harness; a C++ program is exec'd, which makes a process dumpable
    again unless it cannot read its executable: the harness makes it execute-only before each test, so even a
    program that gave itself read access back runs non-dumpable the next time."""
    [python], _ = run(engine, "import ctypes\nprint(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n")  # PR_GET_DUMPABLE
    assert (python.verdict, python.stdout) == (Verdict.OK, "0\n")
    program = (
        "#include <cstdio>\n#include <sys/stat.h>\nint main() {\n"
        '  std::FILE *self = std::fopen("/proc/self/exe", "rb");\n'
        '  std::printf("%d %s\\n", prctl(PR_GET_DUMPABLE), self ? "readable" : "unreadable");\n'
        '  chmod("/proc/self/exe", 0755);\n}\n'
    )
    runs, _ = run(engine, program, tests=2, language="cpp")
    assert [(r.verdict, r.stdout) for r in runs] == [(Verdict.OK, "0 unreadable\n")] * 2


def test_namespaces_and_mounts_are_refused(engine) -> None:
    program = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print(libc.unshare(0x10000000), ctypes.get_errno())  # CLONE_NEWUSER
print(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None), ctypes.get_errno())
"""
    [result], _ = run(engine, program)
    assert result.stdout.split() == ["-1", "1", "-1", "1"]


def test_exit_before_the_tests_finish_is_not_a_pass(engine) -> None:
    # stdin test: whatever was printed before os._exit is the output the server compares (here: nothing flushed).
    [stdin_run], _ = run(engine, "print('3')\nimport os\nos._exit(0)\n")
    assert (stdin_run.verdict, stdin_run.stdout) == (Verdict.OK, "")
    # function-call test: exiting before the call returns is a runtime error, never an empty "pass".
    [call], _ = run(engine, "import os\nos._exit(0)\ndef f(x):\n    return x\n", fn_name="f", args=(1,))
    assert call.verdict == Verdict.RUNTIME_ERROR
    [call], _ = run(engine, "import os\ndef f(x):\n    os._exit(0)\n", fn_name="f", args=(1,))
    assert call.verdict == Verdict.RUNTIME_ERROR


def test_killing_the_harness_fails_the_test_and_stops_the_rest(engine) -> None:
    [first, second], _ = run(engine, "import os, signal\nos.kill(-1, signal.SIGKILL)\n", tests=2)
    assert first.verdict == Verdict.RUNTIME_ERROR
    assert second.verdict == Verdict.NOT_RUN


def test_environment_is_cleared(engine, monkeypatch) -> None:
    monkeypatch.setenv("REWARD_SERVER_SECRET_TOKEN", "hunter2")
    [result], _ = run(engine, "import os\nprint(sorted(os.environ))\n")
    assert "REWARD_SERVER_SECRET_TOKEN" not in result.stdout
    assert eval(result.stdout) == ["HOME", "LANG", "PATH", "PWD", "TMPDIR"]


def test_concurrent_sandboxes_stay_apart(engine) -> None:
    """Sandboxes started from several threads at once each see only their own work dir."""
    outs: list[list[TestRun]] = []

    def one(i: int) -> None:
        src = f"import os\nopen('mine', 'w').write('{i}')\nprint(sorted(os.listdir('.')), open('mine').read())\n"
        outs.append(engine.run("python", src, [TestInput()], LIMITS))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r[0].stdout for r in outs) == [f"['mine'] {i}\n" for i in range(6)]


def test_no_sandbox_process_outlives_a_run(engine) -> None:
    before = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    run(engine, "import time\ntime.sleep(100)\n")
    after = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}
    assert after <= before
