"""``lora-serve --watch``: load each new checkpoint of a training run into the running vLLM server.

vLLM caches an adapter by name, so a checkpoint is never loaded under a name used before (a rewritten
``checkpoint-N`` gets ``<run>-stepN-r2``): a stale cache entry can then never answer for new weights. A folder is
loaded only once its files stopped changing for one poll interval, so a checkpoint still being written is not
half-read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from inference.adapters import WEIGHT_FILES, AdapterError, Checkpoint, ServedModel, checkpoint_name, find_checkpoints
from inference.adapters import validate_adapter as _validate_adapter

#: Files whose size and modification time identify a version of a checkpoint's adapter.
_TRACKED_FILES = ("adapter_config.json", *WEIGHT_FILES)

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(folder: Path) -> Fingerprint:
    """Name, size and mtime of the adapter files in ``folder`` (empty when it has none)."""
    entries = []
    for name in _TRACKED_FILES:
        try:
            stat = (folder / name).stat()
        except OSError:
            continue
        entries.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


@dataclass
class LoadedAdapter:
    """An adapter ``--watch`` loaded into vLLM."""

    name: str
    checkpoint: Checkpoint


@dataclass
class CheckpointTracker:
    """What ``--watch`` has seen of a run directory; pure bookkeeping, no I/O but the directory scan."""

    run_dir: Path
    keep: int
    #: Names that must never be handed out again (everything served so far, static adapters included).
    taken: set[str] = field(default_factory=set)
    #: Last fingerprint seen per folder, not yet acted on.
    pending: dict[Path, Fingerprint] = field(default_factory=dict)
    #: Fingerprint per folder already acted on (loaded, skipped as old, or rejected).
    done: dict[Path, Fingerprint] = field(default_factory=dict)
    #: Watch-loaded adapters, oldest first.
    loaded: list[LoadedAdapter] = field(default_factory=list)

    def scan(self) -> list[tuple[Checkpoint, Fingerprint]]:
        return [(c, fingerprint(c.path)) for c in find_checkpoints(self.run_dir)]

    def mark_served(self, paths: Iterable[Path]) -> None:
        """Folders already served statically are not loaded again."""
        for path in paths:
            self.done[Path(path)] = fingerprint(Path(path))

    def start(self, served: Iterable[Path]) -> None:
        """Decide what of the folder's current content ``--watch`` may still load.

        When the run is already served (``--from-run DIR --watch DIR``, with or without ``--latest``) every
        checkpoint present now counts as handled and only new ones are loaded; otherwise the newest ``keep``
        present now are loaded on the first polls.
        """
        served = [Path(p) for p in served]
        if any(p.parent == self.run_dir for p in served):
            served += [c.path for c in find_checkpoints(self.run_dir)]
        self.mark_served(served)

    def ready(self, scan: list[tuple[Checkpoint, Fingerprint]]) -> tuple[list[Checkpoint], list[Checkpoint]]:
        """Split new, settled checkpoints into ``(to_load, skipped)``: only the newest ``keep`` are loaded.

        A folder is settled when it has adapter files and the same fingerprint as on the previous poll.
        """
        settled = []
        for checkpoint, version in scan:
            if not version or self.done.get(checkpoint.path) == version:
                continue
            if self.pending.get(checkpoint.path) == version:
                settled.append(checkpoint)
                del self.pending[checkpoint.path]
            else:
                self.pending[checkpoint.path] = version
        settled.sort(key=lambda c: c.step)
        cut = max(0, len(settled) - self.keep)
        return settled[cut:], settled[:cut]

    def unique_name(self, checkpoint: Checkpoint) -> str:
        """``<run>-step<N>``, or ``-r2``, ``-r3``... when that name was ever used.

        Example:
            >>> tracker = CheckpointTracker(Path("/runs/exp"), keep=2, taken={"exp-step10"})
            >>> tracker.unique_name(Checkpoint(10, Path("/runs/exp/checkpoint-10")))
            'exp-step10-r2'
        """
        base = checkpoint_name(self.run_dir, checkpoint.step)
        name, attempt = base, 1
        while name in self.taken:
            attempt += 1
            name = f"{base}-r{attempt}"
        return name

    def record(self, checkpoint: Checkpoint, version: Fingerprint, name: str | None) -> None:
        """Remember that ``checkpoint`` at ``version`` was acted on (``name`` set when it was loaded)."""
        self.done[checkpoint.path] = version
        if name is not None:
            self.taken.add(name)
            self.loaded.append(LoadedAdapter(name, checkpoint))

    def to_unload(self) -> list[LoadedAdapter]:
        """Loaded adapters to drop: a folder that vanished or was superseded, then the oldest beyond ``keep``."""
        latest_by_path = {a.checkpoint.path: a for a in self.loaded}
        gone = [a for a in self.loaded if not a.checkpoint.path.exists() or latest_by_path[a.checkpoint.path] is not a]
        rest = [a for a in self.loaded if a not in gone]
        return gone + rest[: max(0, len(rest) - self.keep)]

    def forget(self, adapter: LoadedAdapter) -> None:
        self.loaded.remove(adapter)


class Watcher:
    """Polls a run directory and loads/unloads adapters through vLLM's runtime LoRA endpoints."""

    def __init__(
        self,
        tracker: CheckpointTracker,
        *,
        url: str,
        base_model: str,
        max_rank: int,
        allow_base_mismatch: bool = False,
        say: Callable[[str], None] = print,
        timeout: float = 300.0,
    ) -> None:
        self.tracker = tracker
        self.url = url
        # Every checkpoint is checked against the same model: its files are read for the first one only.
        self.base_model = ServedModel(base_model)
        self.max_rank = max_rank
        self.allow_base_mismatch = allow_base_mismatch
        self.say = say
        self.client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def _post(self, route: str, payload: dict) -> str | None:
        """POST to vLLM; None on success, else the error text."""
        try:
            response = self.client.post(f"{self.url}{route}", json=payload)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text.strip()}"

    def _load(self, checkpoint: Checkpoint) -> str | None:
        name = self.tracker.unique_name(checkpoint)
        try:
            adapter = _validate_adapter(
                name, checkpoint.path, self.base_model, allow_base_mismatch=self.allow_base_mismatch
            )
        except AdapterError as exc:
            for problem in exc.problems:
                self.say(f"not loading {problem}")
            return None
        if adapter.rank > self.max_rank:
            self.say(
                f"not loading adapter {name!r} ({checkpoint.path}): rank {adapter.rank} > --max-lora-rank "
                f"{self.max_rank} of this server; restart lora-serve to serve it"
            )
            return None
        error = self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(adapter.path)})
        if error is not None:
            self.say(f"vLLM could not load {name!r} from {checkpoint.path}: {error}")
            return None
        self.say(f"loaded {name} from {checkpoint.path}")
        return name

    def poll(self) -> list[str]:
        """One scan: load what is new and settled, unload what is stale; return the names loaded."""
        scan = self.tracker.scan()
        versions = {c.path: v for c, v in scan}
        to_load, skipped = self.tracker.ready(scan)
        for checkpoint in skipped:
            self.tracker.record(checkpoint, versions[checkpoint.path], None)
            self.say(f"skipping {checkpoint.path}: newer checkpoints arrived (keeping the newest {self.tracker.keep})")
        loaded = []
        for checkpoint in to_load:
            name = self._load(checkpoint)
            self.tracker.record(checkpoint, versions[checkpoint.path], name)
            if name is not None:
                loaded.append(name)
        for adapter in self.tracker.to_unload():
            error = self._post("/v1/unload_lora_adapter", {"lora_name": adapter.name})
            self.tracker.forget(adapter)
            self.say(f"unloaded {adapter.name}" if error is None else f"could not unload {adapter.name}: {error}")
        return loaded
