"""Remote code engines: SandboxFusion (``POST /run_code``) and Piston (``POST /api/v2/execute``).

They only *run* programs, one HTTP request per test; grading stays on this server (:mod:`.compare`), so a problem
scores the same whichever engine ran it, and expected outputs never leave the server. An engine that cannot be
reached, answers with an error status or an error body, or does not answer in time raises
:class:`EngineUnavailable` (the sample is NaN with an UNAVAILABLE note, never a wrong answer).

- SandboxFusion (bytedance/SandboxFusion, ``sandbox/server/sandbox_api.py``): the request verl's
  ``verl/utils/reward_score/sandbox_fusion/utils.py`` sends (``code``, ``language``, ``stdin``, ``compile_timeout``,
  ``run_timeout``, ``memory_limit_MB``, ``files``, ``fetch_files``); the answer's ``status`` is ``Success``,
  ``Failed`` or ``SandboxError``, with ``compile_result`` / ``run_result`` (``status`` ``Finished`` |
  ``TimeLimitExceeded`` | ``Error``, ``return_code``, ``stdout``, ``stderr``).
- Piston (engineer-man/piston, ``readme.md``: Execute Endpoint): ``language``, ``version``, ``files``, ``stdin``,
  ``run_timeout`` / ``compile_timeout`` (ms), ``run_cpu_time``, ``run_memory_limit`` (bytes); the answer has ``run``
  and, for compiled languages, ``compile`` stages (``stdout``, ``stderr``, ``code``, ``signal``, ``status``: RE, SG,
  TO, OL, EL, XX). A 400 names a request Piston refuses (an unknown runtime).

A function-call test runs the program under a small Python driver (:data:`CALL_DRIVER`) that reads the arguments as
JSON from stdin and prints the JSON of the return value, as the local sandbox's harness does.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from reward_server import cancellation
from reward_server.code.engines import ENGINES
from reward_server.code.execution import EngineUnavailable, RunLimits, TestInput, TestRun, Verdict
from reward_server.code.languages import LANGUAGES
from reward_server.settings import CodeSettings

#: Runs the program's functions: globals first, else a LeetCode-style ``Solution`` class. The program's own prints
#: go to stderr, so stdout holds only the JSON of the return value (tuples become lists).
CALL_DRIVER = """\
import json, sys
_source = {source!r}
_args = json.loads(sys.stdin.read())
_stdout, sys.stdout = sys.stdout, sys.stderr
_ns = {{"__name__": "solution"}}
exec(compile(_source, "main.py", "exec"), _ns)
_fn = _ns.get({fn_name!r})
if _fn is None and "Solution" in _ns:
    _fn = getattr(_ns["Solution"](), {fn_name!r})
if _fn is None:
    raise SystemExit("no function {fn_name} in the program")
_result = json.dumps(_fn(*_args))
_stdout.write(_result + "\\n")
_stdout.flush()
"""


def engine_languages(engine: str) -> dict[str, str]:
    """Our language names → ``engine``'s, from the language table (its ``sandboxfusion`` / ``piston`` names).

    Example:
        >>> engine_languages("piston")
        {'python': 'python', 'cpp': 'c++'}
    """
    return {lang.name: getattr(lang, engine, "") for lang in LANGUAGES.values() if getattr(lang, engine, "")}


#: Seconds an HTTP call may take beyond the program's own limits (queueing, compile, transfer).
MARGIN_S = 10.0
_RETRY_STATUS = (502, 503, 504)


def call_source(source: str, fn_name: str) -> str:
    """The Python program that runs one function-call test of ``source`` (arguments on stdin as a JSON list).

    Example:
        >>> import subprocess, sys
        >>> program = call_source("def add(a, b):\\n    print('hi')\\n    return (a + b, a)", "add")
        >>> subprocess.run([sys.executable, "-c", program], input="[1, 2]", capture_output=True, text=True).stdout
        '[3, 1]\\n'
    """
    return CALL_DRIVER.format(source=source, fn_name=fn_name)


def _stdin_of(test: TestInput) -> str:
    return json.dumps(list(test.args)) if test.fn_name else test.stdin


def post_json(engine: str, url: str, payload: Mapping[str, Any], timeout_s: float, retries: int = 2) -> Any:
    """POST ``payload`` as JSON and return the JSON answer; any failure is :class:`EngineUnavailable` naming ``engine``.

    A gateway error (502/503/504) is retried ``retries`` times, 0.5 s and 1 s apart (verl retries 504s the same way).
    """
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, body, {"Content-Type": "application/json", "Accept": "application/json"}, method="POST"
    )
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace").strip()
            if exc.code in _RETRY_STATUS and attempt < retries:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise EngineUnavailable(f"{engine} at {url} answered HTTP {exc.code}: {detail or exc.reason}") from None
        except TimeoutError:
            raise EngineUnavailable(f"{engine} at {url} did not answer within {timeout_s:g} s") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EngineUnavailable(f"{engine} at {url} is unreachable: {reason}") from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EngineUnavailable(f"{engine} at {url} answered something that is not JSON: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _returned(test: TestInput, run: TestRun) -> TestRun:
    """A function-call test that exited 0 without printing a result (``os._exit(0)`` in the function) crashed."""
    if test.fn_name is None or run.verdict is not Verdict.OK or run.stdout.strip():
        return run
    why = (run.stderr_tail + "\nexited before returning a result")[-500:]
    return TestRun(Verdict.RUNTIME_ERROR, "", why, run.exit_code, run.elapsed_s)


def _over_output(stdout: str, limits: RunLimits) -> bool:
    return len(stdout.encode("utf-8", "replace")) > limits.output_bytes


def _tail(text: Any) -> str:
    return str(text or "")[-500:]


class _RemoteEngine:
    """One HTTP request per test, up to ``parallel`` of one completion's tests at once.

    A remote completion holds none of the local sandbox's slots (``code_max_concurrency`` counts this machine's
    sandboxes; a remote engine's capacity is its own, and the scoring workers bound the completions in flight), and
    a cancelled request stops sending its tests: between two tests, and while it waits
    for parallel ones (a request in flight is left to finish in the background, bounded by its HTTP timeout).
    """

    name = "remote"  # also the field of the language table naming each language for this engine

    def __init__(self, url: str, parallel: int = 4, margin_s: float = MARGIN_S) -> None:
        if not url:
            raise ValueError(f"{self.name}: no URL configured")
        self.url = url.rstrip("/")
        self.parallel = max(1, parallel)
        #: Seconds an HTTP call may take beyond the program's limits before the engine counts as unavailable.
        self.margin_s = margin_s

    @property
    def languages(self) -> dict[str, str]:
        """Our language names → this engine's, read from the language table (an entry there is all it takes)."""
        return engine_languages(self.name)

    def _run_one(self, language: str, program: str, test: TestInput, limits: RunLimits) -> TestRun:
        """Send ``program`` (the source, or its function-call driver) with ``test``'s stdin; read the answer."""
        raise NotImplementedError

    def _program(self, language: str, source: str, test: TestInput) -> str:
        if test.fn_name is None:
            return source
        if language != "python":  # the checks up front make call tests Python's: a caller's error, not the engine's
            raise ValueError(f"function-call tests are run for Python only, not {language}")
        return call_source(source, test.fn_name)

    def _one(self, language: str, program: str, test: TestInput, limits: RunLimits) -> TestRun:
        try:
            run = self._run_one(language, program, test, limits)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # an answer not shaped as documented
            raise EngineUnavailable(f"{self.name}: unexpected answer ({type(exc).__name__}: {exc})"[:300]) from None
        return _returned(test, run)

    def run(
        self,
        language: str,
        source: str,
        tests: Sequence[TestInput],
        limits: RunLimits,
        stop_on_failure: bool = False,
    ) -> list[TestRun]:
        if language not in self.languages:
            raise EngineUnavailable(
                f"{self.name} is not set up here for {language!r} (it runs {sorted(self.languages)})"
            )
        if not tests:
            return []
        programs = [self._program(language, source, test) for test in tests]
        return self._run_all(language, programs, tests, limits, stop_on_failure)

    def _run_all(
        self, language: str, programs: list[str], tests: Sequence[TestInput], limits: RunLimits, stop: bool
    ) -> list[TestRun]:
        # The first test alone: a compile error (or an engine down) is then known before the others are sent.
        _stop_if_cancelled()
        runs = [self._one(language, programs[0], tests[0], limits)]
        rest = list(zip(programs[1:], tests[1:], strict=True))
        if runs[0].verdict is Verdict.COMPILE_ERROR:
            return runs + [TestRun(Verdict.COMPILE_ERROR, "", runs[0].stderr_tail) for _ in rest]
        if stop or self.parallel == 1 or len(rest) <= 1:
            for program, test in rest:
                if stop and runs[-1].verdict is not Verdict.OK:
                    runs.append(TestRun(Verdict.NOT_RUN, ""))
                else:
                    _stop_if_cancelled()
                    runs.append(self._one(language, program, test, limits))
            return runs
        pool = ThreadPoolExecutor(min(self.parallel, len(rest)), thread_name_prefix=self.name)
        try:
            futures = [pool.submit(self._one, language, program, test, limits) for program, test in rest]
            pending = set(futures)
            while pending:  # the cancel flag is read in this thread (it is the one the request's slot is watched in)
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                _stop_if_cancelled()
                for future in done:
                    if (error := future.exception()) is not None:
                        raise error
            return runs + [future.result() for future in futures]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _stop_if_cancelled() -> None:
    if cancellation.cancelled():
        raise cancellation.RequestCancelled("request cancelled while its code ran")


class SandboxFusionEngine(_RemoteEngine):
    """Runs programs on a SandboxFusion server (``POST {url}/run_code``), as verl's sandbox_fusion reward does.

    Example:
        >>> SandboxFusionEngine("http://sandbox:8080/").endpoint
        'http://sandbox:8080/run_code'
    """

    name = "sandboxfusion"

    @property
    def endpoint(self) -> str:
        return self.url if self.url.endswith("/run_code") else f"{self.url}/run_code"

    def _run_one(self, language: str, program: str, test: TestInput, limits: RunLimits) -> TestRun:
        payload = {
            "compile_timeout": limits.compile_time_limit_s,
            "run_timeout": limits.time_limit_s,
            "code": program,
            "stdin": _stdin_of(test),
            "memory_limit_MB": limits.memory_mb,
            "language": self.languages[language],
            "files": {},
            "fetch_files": [],
        }
        timeout = limits.compile_time_limit_s + limits.time_limit_s + self.margin_s
        answer = post_json(self.name, self.endpoint, payload, timeout)
        if not isinstance(answer, Mapping) or answer.get("status") not in ("Success", "Failed", "SandboxError"):
            raise EngineUnavailable(f"{self.name}: unexpected answer {str(answer)[:200]}")
        if answer["status"] == "SandboxError":
            raise EngineUnavailable(f"{self.name} sandbox error: {str(answer.get('message') or '')[:300]}")
        compiled, ran = answer.get("compile_result"), answer.get("run_result")
        if compiled and (compiled.get("status") != "Finished" or compiled.get("return_code") != 0):
            why = "compile time limit" if compiled.get("status") == "TimeLimitExceeded" else ""
            return TestRun(Verdict.COMPILE_ERROR, "", _tail(why or compiled.get("stderr")), compiled.get("return_code"))
        if not ran:
            raise EngineUnavailable(f"{self.name}: answer {answer['status']} without a run result")
        stdout, stderr = str(ran.get("stdout") or ""), _tail(ran.get("stderr"))
        code, elapsed = ran.get("return_code"), float(ran.get("execution_time") or 0.0)
        if ran.get("status") == "TimeLimitExceeded":
            return TestRun(Verdict.TIME_LIMIT, stdout, stderr, code, elapsed)
        if ran.get("status") != "Finished":
            raise EngineUnavailable(f"{self.name}: run status {ran.get('status')!r}: {stderr[-200:]}")
        if code != 0:
            return TestRun(Verdict.RUNTIME_ERROR, stdout, stderr, code, elapsed)
        if _over_output(stdout, limits):
            return TestRun(Verdict.OUTPUT_LIMIT, "", stderr, code, elapsed)
        return TestRun(Verdict.OK, stdout, stderr, code, elapsed)


class PistonEngine(_RemoteEngine):
    """Runs programs on a Piston server (``POST {url}/api/v2/execute``), as open-r1's Piston workers do.

    ``versions`` maps a Piston language to the version to ask for ("*": any installed one).

    Example:
        >>> PistonEngine("http://piston:2000").endpoint
        'http://piston:2000/api/v2/execute'
    """

    name = "piston"

    def __init__(
        self,
        url: str,
        parallel: int = 4,
        margin_s: float = MARGIN_S,
        versions: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(url, parallel, margin_s)
        self.versions = dict(versions or {})

    @property
    def endpoint(self) -> str:
        return self.url if self.url.endswith("/api/v2/execute") else f"{self.url}/api/v2/execute"

    def _run_one(self, language: str, program: str, test: TestInput, limits: RunLimits) -> TestRun:
        piston_language = self.languages[language]
        run_ms, compile_ms = round(limits.time_limit_s * 1000), round(limits.compile_time_limit_s * 1000)
        payload = {
            "language": piston_language,
            "version": self.versions.get(piston_language, "*"),
            "files": [{"name": LANGUAGES[language].file_name, "content": program}],
            "stdin": _stdin_of(test),
            "args": [],
            "run_timeout": run_ms,
            "run_cpu_time": run_ms,
            "run_memory_limit": limits.memory_mb * 1024 * 1024,
        }
        if LANGUAGES[language].compile:  # Piston refuses a compile limit above its own, even for a language without one
            payload |= {"compile_timeout": compile_ms, "compile_cpu_time": compile_ms}
        timeout = limits.compile_time_limit_s + limits.time_limit_s + self.margin_s
        answer = post_json(self.name, self.endpoint, payload, timeout)
        if not isinstance(answer, Mapping) or not isinstance(answer.get("run"), Mapping):
            raise EngineUnavailable(f"{self.name}: unexpected answer {str(answer)[:200]}")
        compiled, ran = answer.get("compile"), answer["run"]
        if isinstance(compiled, Mapping) and (compiled.get("code") != 0 or compiled.get("status")):
            if compiled.get("status") == "XX":
                raise EngineUnavailable(f"{self.name} internal error: {compiled.get('message')}")
            why = str(compiled.get("message") or "") if compiled.get("status") == "TO" else ""
            return TestRun(Verdict.COMPILE_ERROR, "", _tail(why or compiled.get("stderr")), compiled.get("code"))
        stdout, stderr = str(ran.get("stdout") or ""), _tail(ran.get("stderr"))
        code, status = ran.get("code"), ran.get("status")
        elapsed = float(ran.get("wall_time") or 0.0) / 1000
        if status == "XX":
            raise EngineUnavailable(f"{self.name} internal error: {ran.get('message')}")
        if status == "TO":
            return TestRun(Verdict.TIME_LIMIT, stdout, stderr, code, elapsed)
        if status in ("OL", "EL") or _over_output(stdout, limits):
            return TestRun(Verdict.OUTPUT_LIMIT, "", stderr, code, elapsed)
        memory = ran.get("memory")
        if status == "SG" and isinstance(memory, int | float) and memory >= payload["run_memory_limit"]:
            return TestRun(Verdict.MEMORY_LIMIT, stdout, stderr, code, elapsed)
        if status or code != 0:
            return TestRun(Verdict.RUNTIME_ERROR, stdout, stderr or _tail(ran.get("message")), code, elapsed)
        return TestRun(Verdict.OK, stdout, stderr, code, elapsed)


def sandboxfusion_engine(code: CodeSettings) -> SandboxFusionEngine:
    """The ``sandboxfusion`` engine of these settings (its URL: ``sandboxfusion_url``)."""
    if not code.sandboxfusion_url:
        raise EngineUnavailable("sandboxfusion: no server configured (setting sandboxfusion_url, --sandboxfusion-url)")
    return SandboxFusionEngine(code.sandboxfusion_url)


def piston_engine(code: CodeSettings) -> PistonEngine:
    """The ``piston`` engine of these settings (its URL: ``piston_url``)."""
    if not code.piston_url:
        raise EngineUnavailable("piston: no server configured (setting piston_url, --piston-url)")
    return PistonEngine(code.piston_url)


ENGINES.setdefault("sandboxfusion", sandboxfusion_engine)
ENGINES.setdefault("piston", piston_engine)
