"""Loading reward code chosen by whoever runs the server: Python files, importable modules, entry points.

A SOURCE (``--rewards-from``, config ``rewards_from``) is a file path (``./my_rewards.py``) or a module
name (``my_team.rewards``); with ``--rewards-entry-points`` (config ``rewards_entry_points``) every
module that installed packages advertise in the entry-point group :data:`ENTRY_POINT_GROUP` is one too.
A source's rewards are the ones its ``@sample_reward``/``@batch_reward`` decorators declare (their names
and aliases as declared) and its plain TRL reward functions (:mod:`reward_server.trl_functions`, named
after ``__name__``).

Everything is checked before anything is served: every problem (a source that does not import, a name
taken by a built-in or another plugin, a function that cannot be served, a param default of an unknown
type) is collected as one line naming the source, the function and what is wrong, and
:class:`PluginError` carries them all; nothing is half-loaded. A file is read once: the server and its
workers run the same bytes, so a file edited during a reload cannot give workers different code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import inspect
import os
import re
import sys
import traceback
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reward_server.declare import registering_into
from reward_server.registry import Registry, Reward
from reward_server.trl_functions import Unservable, is_trl_function, trl_reward

#: The entry-point group installed packages use to advertise reward modules (the value names a module).
ENTRY_POINT_GROUP = "grpo_rewards.rewards"


class PluginError(Exception):
    """Reward code that cannot be served; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Source:
    """One place reward code comes from, as read at one moment (workers load exactly this)."""

    #: As configured (``./my_rewards.py``, ``my_team.rewards``, ``entry point NAME``): how problems name it.
    spec: str
    #: "file" or "module".
    kind: str
    #: What ``RewardInfo.source`` says: a file's absolute path, or the module name.
    name: str
    #: A file's bytes as read (empty for a module).
    code: bytes = b""
    #: Content hash of the code (a module's: of its files, known once imported).
    version: str = ""
    #: The files behind it (what ``--reload-on-change`` watches).
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    """A registry with the built-ins and the plugin rewards, and where the plugins came from."""

    registry: Registry
    sources: tuple[Source, ...] = ()
    #: Canonical names of the plugin rewards (a reload drops these and loads the sources again).
    names: frozenset[str] = frozenset()

    def versions(self) -> dict[str, str]:
        """Plugin reward name → code version (what every worker must have loaded too)."""
        return {r.name: r.code_version for r in self.registry if r.name in self.names}


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def is_file_spec(spec: str) -> bool:
    """A SOURCE naming a file (ends in .py, has a path separator, or exists) rather than a module."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec or Path(spec).is_file()


def resolve(specs: Sequence[str], entry_points: bool = False) -> tuple[list[Source], list[str]]:
    """The configured sources (files read now) and the entry-point modules; plus problems."""
    sources: list[Source] = []
    problems: list[str] = []
    for spec in specs:
        if is_file_spec(spec):
            path = Path(spec).expanduser().resolve()
            try:
                code = path.read_bytes()
            except OSError as exc:
                problems.append(f"{spec}: cannot read the file: {exc.strerror or exc}")
                continue
            sources.append(Source(spec, "file", str(path), code, _hash(code), (str(path),)))
        else:
            sources.append(Source(spec, "module", spec))
    if entry_points:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            where = f"entry point {ep.name} ({ENTRY_POINT_GROUP})"
            if ep.attr:
                problems.append(f"{where}: names {ep.value!r}; it must name a module (no ':attr')")
                continue
            sources.append(Source(where, "module", ep.module))
    return sources, problems


def _module_files(module: types.ModuleType) -> tuple[str, ...]:
    """A module's file, or every .py file of a package (a change to any of them is a change of the code)."""
    paths = getattr(module, "__path__", None)
    if paths:
        return tuple(sorted(str(p) for root in paths for p in Path(root).rglob("*.py")))
    file = getattr(module, "__file__", None)
    return (file,) if file else ()


def _import(source: Source) -> types.ModuleType:
    if source.kind == "file":
        path = Path(source.name)
        module_name = "reward_plugins." + (re.sub(r"\W", "_", path.stem) or "plugin")
        module = types.ModuleType(module_name)
        module.__file__ = str(path)
        # Sibling modules of the file import as they would when running it (helpers next to it).
        if str(path.parent) not in sys.path:
            sys.path.append(str(path.parent))
        sys.modules[module_name] = module  # dataclasses and typing look modules up by name
        exec(compile(source.code, str(path), "exec"), module.__dict__)  # the operator chose this code
        return module
    # A fresh import every time (a reload): drop the module and its submodules from the cache.
    for name in [n for n in sys.modules if n == source.name or n.startswith(source.name + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return importlib.import_module(source.name)


def _import_problem(exc: BaseException, source: Source) -> str:
    """One line: the exception, and where in the source it happened."""
    where = ""
    text = str(exc)
    if isinstance(exc, SyntaxError) and exc.lineno:
        # str() of a SyntaxError already ends in "(file, line N)": its message alone, the place once below.
        text = exc.msg
        where = f"{exc.filename}:{exc.lineno}" if exc.filename != source.name else f"line {exc.lineno}"
    else:
        # The plugin's own frames (not importlib's or this module's).
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename not in (__file__,)]
        frames = [f for f in frames if not f.filename.startswith("<") and "importlib" not in f.filename]
        own = [f for f in frames if f.filename == source.name] or frames[-1:]
        if own:
            frame = own[-1]
            where = f"line {frame.lineno}" if frame.filename == source.name else f"{frame.filename}:{frame.lineno}"
    message = " ".join(f"{type(exc).__name__}: {text}".split())
    return f"{source.spec}: does not import: {message}" + (f" ({where})" if where else "")


def _public_functions(module: types.ModuleType) -> Iterable[types.FunctionType]:
    """The module's own public functions (``__all__`` if it has one), each once."""
    wanted = getattr(module, "__all__", None)
    seen: set[int] = set()
    for attr, obj in list(vars(module).items()):
        if attr.startswith("_") or (wanted is not None and attr not in wanted):
            continue
        if not inspect.isfunction(obj) or obj.__module__ != module.__name__ or id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj


def load_source(source: Source) -> tuple[Source, list[Reward], list[str]]:
    """Import one source; its rewards (decorated and TRL functions), the source with its files, and problems."""
    scratch = Registry()
    try:
        with registering_into(scratch):
            module = _import(source)
    except BaseException as exc:  # SystemExit and the like from an import are a problem too
        if isinstance(exc, KeyboardInterrupt):
            raise
        return source, [], [_import_problem(exc, source)]
    if source.kind == "module":
        files = _module_files(module)
        digest = hashlib.sha256()
        for file in files:
            digest.update(Path(file).read_bytes())
        source = dataclasses.replace(source, version=digest.hexdigest()[:12], files=files)
    rewards = [dataclasses.replace(r, source=source.name, code_version=source.version) for r in scratch]
    problems: list[str] = []
    for fn in _public_functions(module):
        if hasattr(fn, "__reward_name__") or not is_trl_function(fn):
            continue  # a decorated reward (already registered) or a helper
        try:
            rewards.append(trl_reward(fn, source.name, source.version))
        except Unservable as exc:
            problems.append(f"{source.spec}: function {fn.__name__}: {exc}")
    return source, rewards, problems


def _owner(registry: Registry, key: str) -> str:
    other = next(r for r in registry if key == r.name or key in r.aliases)
    alias = "" if key == other.name else " (as its alias)"
    if other.source == "built-in":
        return f"the built-in reward {other.name!r}{alias}"
    return f"{other.name!r} from {other.source}{alias}"


def _clash(source: Source, reward: Reward, taken: str, registry: Registry) -> str:
    """A name clash, with what to do about it: the server has no per-source prefix, so the hint is to rename.

    TRL's docs name a function ``format_reward_func``, which is an alias of a built-in here; a function is served
    under its ``__name__`` and a decorated reward under its declared name and aliases, so renaming is the fix.
    """
    fix = f"rename it (e.g. {'my_' + taken!r})" if reward.name == taken else "rename or drop that alias"
    return (
        f"{source.spec}: {reward.name}: the name {taken!r} is taken by {_owner(registry, taken)}; "
        f"{fix}: names are global, there is no per-source prefix"
    )


def load_catalogue(
    base: Registry, specs: Sequence[str], entry_points: bool = False, drop: Iterable[str] = ()
) -> Catalogue:
    """``base`` (less the rewards named in ``drop``, the plugins of a previous load) plus every source's rewards.

    Raises :class:`PluginError` with every problem found; ``base`` itself is never changed.
    """
    drop = frozenset(drop)
    sources, problems = resolve(specs, entry_points)
    if not sources and not drop and not problems:
        return Catalogue(base)
    registry = base.copy(drop=drop)
    loaded: list[Source] = []
    names: set[str] = set()
    for source in sources:
        source, rewards, found = load_source(source)
        loaded.append(source)
        problems += found
        for reward in rewards:
            taken = next((key for key in (reward.name, *reward.aliases) if key in registry), None)
            if taken is not None:
                problems.append(_clash(source, reward, taken, registry))
                continue
            registry.add(reward)
            names.add(reward.name)
    if problems:
        raise PluginError(problems)
    return Catalogue(registry, tuple(loaded), frozenset(names))


def load_into(registry: Registry, sources: Sequence[Source]) -> None:
    """In a worker: add the rewards of the sources the server loaded (the same file bytes) to ``registry``."""
    problems: list[str] = []
    for source in sources:
        _, rewards, found = load_source(source)
        problems += found
        for reward in rewards:
            if reward.name in registry:
                problems.append(f"{source.spec}: {reward.name}: the name is taken by {_owner(registry, reward.name)}")
            else:
                registry.add(reward)
    if problems:
        raise PluginError(problems)
