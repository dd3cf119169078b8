"""Domain errors of the reward service.

Reward and scoring code raises these; the transport layer (``transport.grpc_servicer``) maps them to gRPC
status codes in one place, :data:`STATUS_OF`. Messages name the problem precisely (which
sample, which field, which param) because they travel to the caller verbatim.
"""

from __future__ import annotations


class RewardServiceError(Exception):
    """Base class: a request the service refuses, with a message for the caller."""


class InvalidArgument(RewardServiceError):
    """The request itself is wrong (unknown reward, bad param, missing field, ...)."""


class FailedPrecondition(RewardServiceError):
    """The request is valid but the server is not set up for it (a reward not enabled)."""


class ResourceExhausted(RewardServiceError):
    """The request is over a configured limit, or the server is too busy to take it.

    ``retry_after_s`` is set when waiting helps (a full queue, a rate limit); it reaches the
    client as gRPC's retry pushback. Without it the client is told not to retry (the same
    request would be refused again).
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(RewardServiceError):
    """The server is shutting down or a backend is temporarily gone; retrying may work."""
