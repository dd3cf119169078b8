"""Errors of the client side: what the reward service refused, and what a recipe or input got wrong."""

from __future__ import annotations

import grpc


class RewardServiceError(Exception):
    """A call to the reward service failed (after the retries), with the gRPC status and the server's message.

    Attributes:
        code: the gRPC status code (``grpc.StatusCode.UNAVAILABLE``, ``INVALID_ARGUMENT``, ...).
        details: the server's (or the gRPC runtime's) message, verbatim.
        method: the RPC that failed (``"Score"``, ``"ListRewards"``, ``"Check"``).
        target: the address the client was talking to.

    Example:
        >>> err = RewardServiceError(grpc.StatusCode.INVALID_ARGUMENT, "unknown reward 'x'", "Score", "localhost:1")
        >>> print(err)
        Score on localhost:1 failed: INVALID_ARGUMENT: unknown reward 'x'
        >>> err.code.name, err.details
        ('INVALID_ARGUMENT', "unknown reward 'x'")
    """

    def __init__(self, code: grpc.StatusCode, details: str, method: str = "", target: str = "") -> None:
        self.code = code
        self.details = details
        self.method = method
        self.target = target
        where = f"{method} on {target}" if target else method or "reward service call"
        super().__init__(f"{where} failed: {code.name}: {details}")

    @classmethod
    def from_rpc_error(cls, exc: grpc.RpcError, method: str, target: str) -> RewardServiceError:
        """Wrap a ``grpc.RpcError`` (sync or aio) without losing its status or message."""
        code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", method, target)


class RecipeError(ValueError):
    """A recipe or ``--set`` override that cannot be used; the message names the key."""


class PreflightError(RuntimeError):
    """The reward service cannot serve what a recipe needs (down, unknown reward, missing field)."""


class InputError(ValueError):
    """One input record (a JSONL line, a sample) is malformed; the message says which and why."""


class RemoteRewardError(RuntimeError):
    """A reward's own code failed on the server (``NOTE_KIND_REWARD_ERROR``): the bug that TRL, running the reward
    in-process, would have raised. The message names the reward, the first failed sample and the server's reason.

    Example:
        >>> err = RemoteRewardError("exact", 2, "exact raised KeyError: 'answer'", failed=4, total=8)
        >>> print(str(err).split(" (")[0])
        reward 'exact' failed on 4 of 8 samples, first sample 2: exact raised KeyError: 'answer'
    """

    def __init__(self, reward: str, sample_index: int, reason: str, failed: int = 1, total: int = 1) -> None:
        self.reward = reward
        self.sample_index = sample_index
        self.reason = reason
        self.failed = failed
        self.total = total
        super().__init__(
            f"reward {reward!r} failed on {failed} of {total} samples, first sample {sample_index}: {reason} "
            "(a bug in the reward's code; on_reward_error='warn' scores such samples None instead)"
        )
