"""Stopping the worker-side work of a cancelled request (its deadline passed, or its client left).

asyncio cancels the server's side of a call; work already handed to a worker process would run
on. So each CPU-scoring call gets a slot on a small board of shared flags: the server raises the
flag when the call is cancelled, and workers look at it before each sample and stop.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
from collections.abc import Iterator
from typing import Any

#: Slots are reused round-robin; a request still running after this many newer ones merely
#: loses its ability to be stopped early.
SLOTS = 4096


class RequestCancelled(Exception):
    """Raised in a worker when the request it is scoring was cancelled."""


class CancelBoard:
    """Shared flags, one per slot (server side).

    Example:
        >>> board = CancelBoard()
        >>> slot = board.open()
        >>> board.flags[slot], board.cancel(slot), board.flags[slot]
        (0, None, 1)
    """

    def __init__(self) -> None:
        self.flags: Any = mp.get_context("spawn").RawArray("b", SLOTS)
        self._next = 0

    def open(self) -> int:
        """A fresh slot for one call (its flag lowered)."""
        slot, self._next = self._next, (self._next + 1) % SLOTS
        self.flags[slot] = 0
        return slot

    def cancel(self, slot: int) -> None:
        self.flags[slot] = 1


# -- worker side ---------------------------------------------------------------------------------------------------
_flags: Any = None
_local = threading.local()


def attach(flags: Any) -> None:
    """Pool initializer hook: the board's flags, shared with the server process."""
    global _flags
    _flags = flags


@contextlib.contextmanager
def watching(slot: int | None) -> Iterator[None]:
    """Make :func:`cancelled` answer for ``slot`` in this thread while the block runs."""
    _local.slot = slot
    try:
        yield
    finally:
        _local.slot = None


def cancelled() -> bool:
    """True when the request this thread is scoring has been cancelled (cheap: one shared read)."""
    slot = getattr(_local, "slot", None)
    return slot is not None and _flags is not None and _flags[slot] == 1
