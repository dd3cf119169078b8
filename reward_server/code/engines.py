"""Choosing the engine that runs programs, and whether the code rewards can be served at all.

``get_engine()`` returns the server's engine (setting ``code_engine``; "local", the bubblewrap sandbox, by default);
remote engines register a factory in :data:`ENGINES`. At start-up the server calls :func:`startup`, which switches
the code rewards off, with the reason ListRewards shows, when code execution is off by config or the local sandbox
fails its self-test. Unsafe mode (no sandbox) is used only when the operator asks for it by its name, and is logged
as a WARNING at start-up.

A request may pick the local sandbox (``engine: local``) on a server whose own engine is remote. The self-test then
runs too: at start-up (a WARNING says when it fails, the code rewards stay on for the remote engine), and once per
scoring process, cached, the first time such a request picks it (workers are separate processes). A failed
self-test makes every sample sent to the local engine NaN with an UNAVAILABLE note giving the reason and the fix:
the sandbox never runs code unchecked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from reward_server import settings
from reward_server.code.execution import Engine, EngineUnavailable
from reward_server.code.sandbox import LocalEngine, UnsafeLocalEngine
from reward_server.registry import Registry
from reward_server.settings import CodeSettings

log = logging.getLogger(__name__)

#: Engine name → factory. The remote engines (reward_server.code.remote) add theirs.
ENGINES: dict[str, Callable[[CodeSettings], Engine]] = {"local": LocalEngine, "unsafe-local": UnsafeLocalEngine}
#: Names of the rewards that run code: switched off together when code cannot run (the rewards module adds them
#: when it registers them, which the server's catalogue import does before start-up runs).
CODE_REWARDS: set[str] = set()

UNSAFE_WARNING = (
    "unsafe_run_code_without_sandbox is ON: code rewards run model-written programs with NO sandbox, as this "
    "server's user, with the network and every file it can reach. Never do this on a machine that matters."
)

_engines: dict[tuple[str, CodeSettings], Engine] = {}
_lock = threading.Lock()
#: The local sandbox's self-test result per settings ("" = passed), run once per process.
_self_tests: dict[CodeSettings, str] = {}
_self_test_lock = threading.Lock()


def local_sandbox_reason(code: CodeSettings) -> str:
    """Why the local sandbox cannot be used with these settings ("" when it passes its self-test); cached."""
    with _self_test_lock:
        if code not in _self_tests:
            from reward_server.code.sandbox.selftest import self_test

            _self_tests[code] = self_test(code) or ""
        return _self_tests[code]


def engine_name(code: CodeSettings, name: str | None = None) -> str:
    """The engine a reward gets: ``name``, else the server's; "local" means no sandbox only in unsafe mode.

    Example:
        >>> engine_name(CodeSettings()), engine_name(CodeSettings(unsafe_run_code_without_sandbox=True))
        ('local', 'unsafe-local')
    """
    name = name or code.code_engine
    if name == "local" and code.unsafe_run_code_without_sandbox:
        return "unsafe-local"
    if name == "unsafe-local" and not code.unsafe_run_code_without_sandbox:
        raise ValueError("engine 'unsafe-local' runs code with no sandbox: only with unsafe_run_code_without_sandbox")
    if name not in ENGINES:
        raise ValueError(f"unknown code engine {name!r}; known: {', '.join(sorted(ENGINES))}")
    return name


def get_engine(name: str | None = None, code: CodeSettings | None = None) -> Engine:
    """The engine called ``name`` (None: the server's ``code_engine``), one instance per process and settings.

    Example:
        >>> get_engine().name
        'local'
    """
    code = code or settings.current().code
    key = (engine_name(code, name), code)
    if key[0] == "local" and code.code_engine != "local":
        # Picked by a request on a server whose own engine is remote: start-up did not gate it (the server's own
        # local engine is gated there: the code rewards are switched off when it fails).
        reason = local_sandbox_reason(code)
        if reason:
            raise EngineUnavailable(reason)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = ENGINES[key[0]](code)
        return engine


def unavailable_reason(code: CodeSettings) -> str:
    """Why code rewards cannot be served with these settings ("" when they can).

    Example:
        >>> unavailable_reason(CodeSettings(code_execution=False))
        'code execution is switched off on this server (code_execution: false)'
    """
    if not code.code_execution:
        return "code execution is switched off on this server (code_execution: false)"
    try:
        name = engine_name(code)
    except ValueError as exc:
        return str(exc)
    if name == "local":
        return local_sandbox_reason(code)
    try:
        ENGINES[name](code)  # a remote engine without its server's URL cannot run anything
    except EngineUnavailable as exc:
        return str(exc)
    return ""


def startup(code: CodeSettings, registry: Registry) -> str:
    """At server start: warn about unsafe mode, test the sandbox, switch the code rewards off if they cannot run.

    The local sandbox is tested whenever a request can pick it: also on a server whose own engine is remote (its
    failure is then logged, and makes ``engine: local`` samples UNAVAILABLE, see :func:`get_engine`).

    Returns the reason they are off ("" when on); logs it as a WARNING.
    """
    if code.code_execution and code.unsafe_run_code_without_sandbox:
        log.warning(UNSAFE_WARNING)
    reason = unavailable_reason(code)
    if not reason and not code.unsafe_run_code_without_sandbox and engine_name(code) != "local":
        local = local_sandbox_reason(code)  # a request may still pick engine: local
        if local:
            log.warning("requests for the local code engine (engine: local) are unavailable: %s", local)
    if reason:
        names = sorted(n for n in CODE_REWARDS if n in registry)
        for name in names:
            registry.disable(name, reason)
        if code.code_execution:
            log.warning("code rewards %s are unavailable: %s", ", ".join(names) or "(none loaded)", reason)
    return reason
