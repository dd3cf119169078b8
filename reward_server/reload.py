"""Reloading the reward code without a restart (SIGHUP, or ``--reload-on-change``).

A reload loads the sources again into a new catalogue (a copy of the serving registry, built-ins and
model-bound rewards as they are, less the old plugin rewards, plus the new ones), starts a fresh pool of
workers that load the same code, and waits until every worker is warm and has loaded the same code
versions. Only then does the server switch to it (the registry and the pool together, one scorer), so
calls already running finish on the old code and new calls get the new code; the old pool is shut down
once its last call is done. A reload that fails (a source that does not import, a clash, a worker that
cannot load it) changes nothing: the old code keeps serving and the log says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from reward_server.plugins import Catalogue, PluginError, is_file_spec, load_catalogue
from reward_server.pool import make_executor, warm_up
from reward_server.reporting import used_within

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from reward_server.cancellation import CancelBoard
    from reward_server.config import ServerConfig
    from reward_server.scoring import Scorer


class Reloadable(Protocol):
    """What a reload needs of the server (the server satisfies it; the reloader never imports the server)."""

    config: ServerConfig
    scorer: Scorer
    catalogue: Catalogue
    cancel_board: CancelBoard

    def use(self, catalogue: Catalogue, executor: Executor) -> Scorer: ...


log = logging.getLogger(__name__)

#: How often ``--reload-on-change`` looks at the source files, in seconds.
WATCH_POLL_S = 0.5
#: A reload that removes a reward scored within this many seconds warns: some trainer is probably still using it.
RECENT_USE_S = 600.0


class Reloader:
    """Runs one reload at a time for a server; a request during a reload runs another one after it."""

    def __init__(self, server: Reloadable) -> None:
        self.server = server
        self._running: asyncio.Task | None = None
        self._again: str | None = None
        self._watcher: asyncio.Task | None = None
        self._retiring: set[asyncio.Task] = set()
        #: Reloads done and refused so far (logged; tests read the log).
        self.done = self.failed = 0

    def request(self, why: str) -> None:
        """Reload soon (from a signal handler or the watcher); coalesces requests made during a reload."""
        if self._running is not None and not self._running.done():
            self._again = why
            return
        self._running = asyncio.get_running_loop().create_task(self._run(why))

    async def _run(self, why: str) -> None:
        while True:
            await self.reload(why)
            if self._again is None:
                return
            why, self._again = self._again, None

    async def reload(self, why: str) -> bool:
        """Load the sources again and switch to them once a warm pool serves them; False if refused."""
        server, config = self.server, self.server.config
        before = server.scorer.registry.version
        try:
            catalogue: Catalogue = await asyncio.to_thread(
                load_catalogue,
                server.scorer.registry,
                config.rewards_from,
                config.rewards_entry_points,
                server.catalogue.names,
            )
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the new code, the old one keeps serving
            problems = exc.problems if isinstance(exc, PluginError) else [f"{type(exc).__name__}: {exc}"]
            self._refused(why, before, problems)
            return False
        executor = make_executor(config, server.cancel_board, catalogue)
        try:
            await warm_up(executor, config.workers, expect=catalogue.versions())
        except BaseException as exc:
            executor.shutdown(wait=False, cancel_futures=True)
            if not isinstance(exc, Exception):
                raise
            self._refused(why, before, [f"the new workers could not serve it: {type(exc).__name__}: {exc}"])
            return False
        old_names = set(server.catalogue.names)
        retired = server.use(catalogue, executor)
        self.done += 1
        added, removed = sorted(set(catalogue.names) - old_names), sorted(old_names - set(catalogue.names))
        log.info(
            "reloaded reward code (%s): catalogue %s -> %s; plugin rewards: %s; added: %s; removed: %s",
            why,
            before,
            catalogue.registry.version,
            ", ".join(sorted(catalogue.names)) or "none",
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
        )
        in_use = [name for name in removed if used_within(name, RECENT_USE_S)]
        if in_use:
            log.warning(
                "reload (%s) removed reward(s) that calls used in the last %.0f minutes: %s; "
                "their callers now get INVALID_ARGUMENT (unknown reward)",
                why,
                RECENT_USE_S / 60,
                ", ".join(in_use),
            )
        task = asyncio.get_running_loop().create_task(self._retire(retired))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return True

    def _refused(self, why: str, version: str, problems: list[str]) -> None:
        self.failed += 1
        log.error("reload (%s) refused, still serving catalogue %s: %s", why, version, " | ".join(problems))

    async def _retire(self, scorer: Scorer) -> None:
        """Shut the old pool down once the calls that took its scorer are done."""
        while scorer.active:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(scorer.executor.shutdown, True)

    # -- --reload-on-change ---------------------------------------------------------------------------------------
    def watch(self, poll_s: float = WATCH_POLL_S) -> None:
        """Start watching the source files: a change (once the files stop changing) requests a reload."""
        self._watcher = asyncio.get_running_loop().create_task(self._watching(poll_s))

    def _files(self) -> list[str]:
        files = {f for source in self.server.catalogue.sources for f in source.files}
        # Configured files too: one that was unreadable at the last load is watched until it can be loaded.
        files.update(str(Path(s).expanduser().resolve()) for s in self.server.config.rewards_from if is_file_spec(s))
        return sorted(files)

    def _stamp(self) -> tuple:
        stamps = []
        for path in self._files():
            try:
                st = os.stat(path)
                stamps.append((path, st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((path, None, None))
        return tuple(stamps)

    async def _watching(self, poll_s: float) -> None:
        seen = self._stamp()
        while True:
            await asyncio.sleep(poll_s)
            now = self._stamp()
            if now == seen:
                continue
            while True:  # an editor may write a file in several steps: wait until it holds still
                await asyncio.sleep(poll_s)
                later = self._stamp()
                if later == now:
                    break
                now = later
            seen = now
            self.request("source changed")

    async def close(self) -> None:
        """Stop watching and reloading; shut down pools still retiring (their calls are done by now)."""
        for task in (self._watcher, self._running):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._retiring, return_exceptions=True)
