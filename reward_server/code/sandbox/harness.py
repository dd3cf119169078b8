"""The harness: the only code of ours that runs inside the sandbox.

It is started as ``python -S -I -c <this file's text>`` (no file of the server needs to be readable in the sandbox),
reads one request from stdin (``marshal``: the server's own data, and free to import), runs every test in a fresh
child process and writes one JSON line per event to stdout. Expected outputs are never in the request: a program
that reads the harness's memory finds nothing to copy (and cannot read it anyway: the harness makes itself
non-dumpable first, which its forked children inherit; a compiled program is made execute-only, which keeps it
non-dumpable across its execve).

Request: ``{"file", "source", "compile": [argv] | null, "run": [argv] | null (null = run Python in a forked child
of this interpreter), "tests": [{"stdin", "fn_name", "args"}], "limits": {...}, "stop_on_failure", "sandboxed",
"work", "python_path": [dirs]}``.

Lines out: ``{"compile": {...}}`` (when compiling), ``{"start": i}`` before test ``i`` runs, then its result
``{"i", "verdict", "stdout", "stderr_tail", "exit_code", "elapsed_s"}``, and ``{"done": true}`` at the end. A
``start`` with no result means the program killed the harness: the engine then charges that test to the program.

Standard library only, and nothing newer than Python 3.9: it runs on whichever interpreter the sandbox has.
"""

from __future__ import annotations

import marshal
import os
import resource
import select
import signal
import sys
import time

STDERR_TAIL = 500
MEMORY_MARK = b"M"
RESULT_MARK = b"R"


def non_dumpable() -> None:
    """prctl(PR_SET_DUMPABLE, 0): no process of the same uid may read this one's memory or open its fds."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


#: JSON string escapes: quote, backslash and the control characters (what json.dumps escapes, ASCII kept as is).
_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)} | {ord('"'): '\\"', ord("\\"): "\\\\", 0x7F: "\\u007f"}


def to_json(value: object) -> str:
    """JSON text of the harness's own events (str, int, float, bool, None, dict, list), without importing json:
    the json module costs more to import than a test costs to run.

    Example:
        >>> import json
        >>> text = 'a"' + "".join(map(chr, (92, 10, 0, 127, 233)))
        >>> event = {"i": 0, "stdout": text, "ok": True, "code": None, "t": 0.5, "l": [1]}
        >>> json.loads(to_json(event)) == event
        True
    """
    if value is None or value is True or value is False:
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPES) + '"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{to_json(str(k))}: {to_json(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(to_json(v) for v in value) + "]"


def emit(event: dict) -> None:
    sys.stdout.write(to_json(event) + "\n")
    sys.stdout.flush()


def set_limits(limits: dict, cpu_s: float, memory_mb: int, fsize: int) -> None:
    cpu = max(1, int(cpu_s + 0.999))
    for which, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20)),
        (resource.RLIMIT_FSIZE, (fsize, fsize)),
        (resource.RLIMIT_NOFILE, (limits["nofile"], limits["nofile"])),
        (resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"])),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(which, value)


def child_fds(stdin_r: int, out_w: int, err_w: int, res_w: int) -> None:
    """fds 0/1/2 the test's pipes, 3 the result pipe, nothing else open (not the harness's stdout)."""
    for fd, target in ((stdin_r, 0), (out_w, 1), (err_w, 2), (res_w, 3)):
        os.dup2(fd, target)
    os.closerange(4, 1 << 16)


def run_python(request: dict, test: dict) -> None:
    """In the forked child: run the program as __main__, or import it and call fn_name(*args). Never returns."""
    import builtins
    import io

    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
    )
    sys.argv = [request["file"]]
    sys.path[:0] = list(request.get("python_path") or ())
    fn_name = test.get("fn_name")
    code = 1
    try:
        path = os.path.join(request["prog"], request["file"])
        with open(path, encoding="utf-8") as f:
            program = compile(f.read(), path, "exec")
        scope = {"__name__": "solution" if fn_name else "__main__", "__builtins__": builtins}
        scope["__file__"] = request["file"]
        exec(program, scope)
        if fn_name:
            fn = scope.get(fn_name)
            if fn is None and isinstance(scope.get("Solution"), type):
                fn = getattr(scope["Solution"](), fn_name, None)  # LeetCode style: a method of class Solution
            if not callable(fn):
                raise NameError(f"the program defines no function {fn_name!r}")
            result = fn(*test.get("args", ()))
            import json  # imported by the harness before the fork when a test calls a function

            try:
                text = json.dumps(result)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{fn_name} returned {type(result).__name__}, not a JSON value: {exc}") from None
            sys.stdout.flush()
            os.write(3, RESULT_MARK + text.encode())
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except MemoryError:
        os.write(3, MEMORY_MARK)
        print("MemoryError", file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the program's own error: a traceback on its stderr, exit 1
        import traceback

        kind, value, tb = sys.exc_info()
        traceback.print_exception(kind, value, tb.tb_next if tb else None)  # from the program's frames on
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - a closed or full pipe: the exit code still tells
        pass
    os._exit(code if 0 <= code < 256 else 1)


def others() -> list[int]:
    """Processes in this pid namespace but its init and us, zombies left out (their parent reaps them)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in (1, os.getpid()):
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    if stat.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                        found.append(int(name))
            except (OSError, IndexError):
                pass  # gone meanwhile
    return found


def kill_rest(sandboxed: bool, pid: int) -> None:
    """Every process the test left: in the sandbox's own pid namespace kill(-1) reaches all but us and its init,
    setsid'ed orphans included, and is repeated until none is left (a fork bomb forks while the first one runs);
    without a sandbox only the test's process group (kill(-1) would hit the host)."""
    for _ in range(2000):
        try:
            if sandboxed:
                os.kill(-1, signal.SIGKILL)
            else:
                os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if not sandboxed or not others():
            return
        time.sleep(0.0005)


def run_one(
    request: dict, test: dict, argv: list | None, cpu_s: float, memory_mb: int, out_cap: int, exec_only: bool = False
) -> dict:
    """Fork one child for one test, feed its stdin, collect its output within the caps; returns the result line.

    ``exec_only``: ``argv[0]`` is the compiled program; the child makes it execute-only (mode 0111) right before
    ``execv``. execve makes a process dumpable again, unless the file it runs is unreadable to it: the kernel then
    keeps it non-dumpable (bwrap drops every capability, so no DAC override reads the file regardless). Done before
    every test, so a test that changed the mode back does not make the next one dumpable.
    """
    limits = request["limits"]
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    work = request["work"]
    if not os.path.isdir(work):
        os.mkdir(work)
    elif os.listdir(work):  # each test starts in an empty work dir
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        os.mkdir(work)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.chdir(work)
            child_fds(stdin_r, out_w, err_w, res_w)
            set_limits(limits, cpu_s, memory_mb, limits["fsize_bytes"])
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            if argv is None:
                run_python(request, test)
            if exec_only:
                os.chmod(argv[0], 0o111)
            os.execv(argv[0], argv)
        except BaseException as exc:  # noqa: BLE001 - before the program runs: report and leave
            os.write(2, f"harness: cannot start the test: {exc!r}\n".encode())
        os._exit(127)
    for fd in (stdin_r, out_w, err_w, res_w):
        os.close(fd)
    data = (test.get("stdin") or "").encode()
    out, err, res = bytearray(), bytearray(), bytearray()
    buffers = {out_r: out, err_r: err, res_r: res}
    verdict = None
    poll = select.poll()
    for fd in buffers:
        os.set_blocking(fd, False)
        poll.register(fd, select.POLLIN)
    os.set_blocking(stdin_w, False)
    if data:
        poll.register(stdin_w, select.POLLOUT)
    else:
        os.close(stdin_w)
        stdin_w = -1
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else -1
    if pidfd >= 0:
        poll.register(pidfd, select.POLLIN)
    deadline = started + request["limits"]["time_limit_s"]
    status = None
    while status is None and verdict is None:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            verdict = "time limit"
            break
        for fd, _ in poll.poll(1000 * min(timeout, 0.01 if pidfd < 0 else timeout)):
            if fd == stdin_w:
                try:
                    data = data[os.write(stdin_w, data[: 1 << 16]) :]
                except OSError:  # the program closed its stdin: the rest is not read
                    data = b""
                if not data:
                    poll.unregister(stdin_w)
                    os.close(stdin_w)
                    stdin_w = -1
            elif fd == pidfd:
                poll.unregister(pidfd)
            else:
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                buf = buffers[fd]
                if not chunk:
                    poll.unregister(fd)
                elif buf is err:
                    err += chunk
                    del err[: -4 * STDERR_TAIL]
                else:
                    buf += chunk
                    if len(buf) > out_cap + 1:
                        verdict = "output limit"
        waited, raw = os.waitpid(pid, os.WNOHANG)
        if waited:
            status = raw
    elapsed = time.monotonic() - started
    kill_rest(request["sandboxed"], pid)
    if status is None:
        status = os.waitpid(pid, 0)[1]
    for fd, buf in buffers.items():  # what the test wrote before it ended
        try:
            while len(buf) <= out_cap + 1:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
        os.close(fd)
    for fd in (stdin_w, pidfd):
        if fd >= 0:
            os.close(fd)
    exit_code = os.waitstatus_to_exitcode(status)
    stderr = err.decode("utf-8", "replace")[-STDERR_TAIL:]
    if verdict is None and len(out) > out_cap:
        verdict = "output limit"
    if verdict is None:
        if exit_code in (-signal.SIGXCPU, -signal.SIGKILL) and elapsed >= cpu_s * 0.9:
            verdict = "time limit"  # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one
        elif res.startswith(MEMORY_MARK) or "MemoryError" in stderr or "std::bad_alloc" in stderr:
            verdict = "memory limit"
        elif exit_code != 0:
            verdict = "runtime error"
        elif test.get("fn_name") and not res.startswith(RESULT_MARK):
            verdict = "runtime error"
            stderr = (stderr + "\nexited before returning a result")[-STDERR_TAIL:]
        else:
            verdict = "ok"
    if test.get("fn_name"):
        text = res[1:].decode("utf-8", "replace") if res.startswith(RESULT_MARK) else ""
    else:
        text = out[:out_cap].decode("utf-8", "replace")
    return {"verdict": verdict, "stdout": text, "stderr_tail": stderr, "exit_code": exit_code, "elapsed_s": elapsed}


def fill(argv: list, request: dict) -> list:
    paths = {"{file}": os.path.join(request["prog"], request["file"]), "{exe}": os.path.join(request["prog"], "main")}
    return [paths.get(a, a) for a in argv]


def main() -> None:
    request = marshal.loads(sys.stdin.buffer.read())  # written by the server (marshal: no import to pay for)
    if any(t.get("fn_name") for t in request["tests"]):
        import json  # noqa: F401 - once here, not in every forked child
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    if request["sandboxed"]:
        non_dumpable()
    limits = request["limits"]
    prog = request["prog"]
    os.makedirs(prog, exist_ok=True)
    with open(os.path.join(prog, request["file"]), "w", encoding="utf-8") as f:
        f.write(request["source"])
    tests = request["tests"]
    if request.get("compile"):
        argv = fill(request["compile"], request)
        request_for_compile = dict(request, limits=dict(limits, time_limit_s=limits["compile_time_limit_s"]))
        result = run_one(
            request_for_compile,
            {},
            argv,
            limits["compile_time_limit_s"],
            limits["compile_memory_mb"],
            out_cap=1 << 16,
        )
        ok = result["verdict"] == "ok"
        if result["verdict"] == "time limit":
            note = f"\ncompilation timed out after {limits['compile_time_limit_s']:g} s"
            result["stderr_tail"] = (result["stderr_tail"] + note)[-STDERR_TAIL:]
        elif not ok:
            result["stderr_tail"] = result["stderr_tail"] or f"compilation failed ({result['verdict']})"
        emit({"compile": result})
        if not ok:
            emit({"done": True})
            return
    argv = fill(request["run"], request) if request.get("run") else None
    exec_only = bool(argv) and argv[0] == fill(["{exe}"], request)[0]
    failed = False
    for i, test in enumerate(tests):
        if failed and request.get("stop_on_failure"):
            emit({"i": i, "verdict": "not run", "stdout": "", "stderr_tail": "", "exit_code": None, "elapsed_s": 0})
            continue
        emit({"start": i})
        result = run_one(
            request, test, argv, limits["time_limit_s"], limits["memory_mb"], limits["output_bytes"], exec_only
        )
        failed = failed or result["verdict"] != "ok"
        emit(dict(result, i=i))
    emit({"done": True})


if __name__ == "__main__":
    main()
