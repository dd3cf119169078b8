"""Domain errors of the reward service.

Reward and scoring code, and the transports' own checks, raise these; ``transport.api`` maps them to status codes
in one place for both transports: :data:`~reward_server.transport.api.STATUS_OF` (domain error → gRPC code), then
:data:`~reward_server.transport.api.HTTP_STATUS` (gRPC code → HTTP status). Messages name the problem precisely
(which sample, which field, which param) because they travel to the caller verbatim.
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


class PassFailed(Unavailable):
    """A model's forward pass failed (not for memory): the texts it held score NaN with an UNAVAILABLE note each.

    Unlike a shutdown (which fails the call, so that a client retries on another replica), this is the samples'
    outcome: the request's other rewards still score, and the next request gets a fresh pass.
    """


class NotFound(RewardServiceError):
    """What the call names does not exist on this server (an HTTP route's unknown profile)."""


class Unimplemented(RewardServiceError):
    """The call asks for something this server does not speak (a Connect body in another encoding)."""


class Unauthenticated(RewardServiceError):
    """No valid bearer token where tokens are configured."""


class DeadlineExceeded(RewardServiceError):
    """The call's deadline ran out (a caller's ``Connect-Timeout-Ms``, or a sample past its time limit)."""


class RewardFailed(RewardServiceError):
    """A reward failed on a sample (a raising reward) where the caller asked for an error status instead of a
    flagged value (an HTTP profile's ``on_failure: error``)."""
