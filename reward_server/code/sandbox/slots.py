"""The server-wide limit on sandboxes running at once.

Sandboxes start in the server's scoring workers (separate processes, several threads each), so the limit is kept
in the file system: N slot files in a directory private to the server, each held with ``flock`` while a sandbox
runs. A lock belongs to its open file, so it works across threads and processes alike, and the kernel releases it
when its holder dies (a SIGKILLed worker never leaks a slot).
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing as mp
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from reward_server import cancellation


def default_limit() -> int:
    """One sandbox per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def server_pid() -> int:
    """The server's process id: a scoring worker's parent, or this process (thread mode, tools, tests)."""
    parent = mp.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getpid()


def slot_dir(owner: int | None = None) -> Path:
    """``<tmp>/reward-server-<uid>/<server pid>/code-slots``, private to this uid; dead servers' dirs are removed."""
    base = Path(tempfile.gettempdir()) / f"reward-server-{os.geteuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RuntimeError(f"{base} is not a private directory of this user; remove it")
    owner = owner or server_pid()
    for old in base.iterdir():
        if old.name.isdigit() and int(old.name) != owner and not Path(f"/proc/{old.name}").exists():
            shutil.rmtree(old, ignore_errors=True)
    path = base / str(owner) / "code-slots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Slots:
    """At most ``limit`` holders at once across every process that uses ``directory``.

    Example:
        >>> import tempfile
        >>> slots = Slots(1, Path(tempfile.mkdtemp()))
        >>> with slots.hold():
        ...     slots.try_take() is None
        True
    """

    def __init__(self, limit: int, directory: Path) -> None:
        self.limit = limit
        self.directory = directory

    def try_take(self) -> int | None:
        """A held slot's open file descriptor, or None when all are taken."""
        for i in range(self.limit):
            fd = os.open(self.directory / str(i), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    @contextlib.contextmanager
    def hold(self, cancelled: Callable[[], bool] = cancellation.cancelled) -> Iterator[None]:
        """Wait for a free slot (giving up when the request is cancelled), hold it while the block runs."""
        pause = 0.002
        while (fd := self.try_take()) is None:
            if cancelled():
                raise cancellation.RequestCancelled("request cancelled while waiting for a code sandbox")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            os.close(fd)  # closing the file releases its lock


_server_slots: dict[int, Slots] = {}
_server_slots_lock = threading.Lock()


def server_slots(limit: int = 0) -> Slots:
    """This server's slots (``limit`` = ``code_max_concurrency``; 0 = one per core), shared by every engine: made
    on first use, in the worker, which then knows its server (:func:`slot_dir`)."""
    with _server_slots_lock:
        slots = _server_slots.get(limit)
        if slots is None:
            slots = _server_slots[limit] = Slots(limit or default_limit(), slot_dir())
        return slots
