"""The scoring worker pool: how it is built (processes or threads) and warmed before it takes calls.

Its own module, below both the server and the reloader (a reload builds a fresh pool the same way).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING

from reward_server import worker
from reward_server.cancellation import CancelBoard
from reward_server.config import ServerConfig

if TYPE_CHECKING:
    from reward_server.plugins import Catalogue

log = logging.getLogger(__name__)


def make_executor(
    config: ServerConfig, board: CancelBoard | None = None, catalogue: Catalogue | None = None
) -> Executor:
    """A warm pool: worker processes (spawned, never forked from a gRPC process) or threads.

    Worker processes load the ``catalogue``'s plugin sources themselves; threads score with its registry.
    """
    flags = board.flags if board is not None else None
    if config.workers == 0:
        worker.init_worker(config.worker_settings(), flags, warm_time_limit=False)
        if catalogue is None:
            return ThreadPoolExecutor(max_workers=4, thread_name_prefix="reward")
        return ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="reward", initializer=worker.use_registry, initargs=(catalogue.registry,)
        )
    return ProcessPoolExecutor(
        max_workers=config.workers,
        mp_context=mp.get_context("spawn"),
        initializer=worker.init_worker,
        initargs=(config.worker_settings(), flags, True, catalogue.sources if catalogue else ()),
    )


async def warm_up(
    executor: Executor, workers: int, timeout: float = 600.0, expect: dict[str, str] | None = None
) -> None:
    """Wait until every worker has run its initializer, so the first requests pay no start-up cost.

    A worker takes tasks only once its initializer is done, and one ready worker can answer every
    ping while the others still import; so ping until each worker has answered (by process id).
    With ``expect`` (plugin reward → code version), every worker must serve exactly those versions.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(executor, ProcessPoolExecutor):
        await loop.run_in_executor(executor, worker.ping)
        return
    ready: set[int] = set()
    deadline = loop.time() + timeout
    while len(ready) < workers:
        if loop.time() > deadline:
            log.warning("only %d of %d scoring workers are ready after %.0f s", len(ready), workers, timeout)
            return
        names = tuple(expect or ())
        answers = await asyncio.gather(
            *(loop.run_in_executor(executor, worker.hello, 0.05, names) for _ in range(workers))
        )
        for pid, versions in answers:
            if expect is not None and versions != expect:
                raise RuntimeError(f"worker {pid} loaded other reward code than the server ({versions} != {expect})")
            ready.add(pid)
