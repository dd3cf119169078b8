"""The local code sandbox: bubblewrap + seccomp + rlimits, one sandbox per completion (README: Code execution)."""

from reward_server.code.sandbox.engine import LocalEngine, SandboxLimits, UnsafeLocalEngine

__all__ = ["LocalEngine", "SandboxLimits", "UnsafeLocalEngine"]
