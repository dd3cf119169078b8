"""Child processes that end with their parent: scoring workers and math time-limit helpers.

A server killed with SIGKILL runs no clean-up, and a worker or time-limit helper blocked on its task queue would
wait forever (it holds both ends of its queue's pipe, so it never sees end-of-file). Each such process
runs a daemon thread that watches its parent: once the parent is gone (the process is re-parented, so
``os.getppid()`` changes) it exits at once. A poll is used rather than ``prctl(PR_SET_PDEATHSIG)``,
which fires when the *thread* that started the child ends, and process pools start workers from
whichever thread submits first.
"""

from __future__ import annotations

import os
import threading
import time

#: How often a child looks for its parent, in seconds (it exits at most this long after the parent died).
POLL_S = 0.5


def exit_with_parent(poll_s: float = POLL_S) -> threading.Thread:
    """Start the watch in this process: ``os._exit`` as soon as the process that started it is gone.

    Example (not started here: it would end the test process with its parent):
        >>> POLL_S <= 1.0
        True
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(0)  # no clean-up to run: the server that owned this work is gone

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread
