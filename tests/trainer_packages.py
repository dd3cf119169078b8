"""What the tests that run trainers' own released code share: installing a pinned package ``--no-deps`` at test time
(only the package registries are reachable in CI), and the plugin reward that makes one sample fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import REPO, RunningServer, start_server, stop_server

#: Where the packages go, kept between runs (ignored by git with the rest of .venv).
PACKAGES = REPO / ".venv" / "trainer-packages"
#: Ray and what it needs that .venv lacks (verl, AReaL and NeMo Gym import it).
RAY = ["ray==2.60.0", "msgpack==1.2.4"]
#: A plugin reward: 0.25, or a reward error on a completion that says BOOM (the failing sample of each test).
PLUGIN = '''
from reward_server import sample_reward


@sample_reward("boom")
def boom(completion: str) -> float:
    """0.25, or a reward error on a completion that says BOOM."""
    if "BOOM" in completion:
        raise RuntimeError("boom in the reward")
    return 0.25
'''
#: The rewards the trainers' calls name, the failing one last.
REWARDS = [{"name": "xml_correctness"}, {"name": "xml_tag_count", "weight": 0.5}, {"name": "boom"}]


def trainer_package(name: str, requirements: list[str], *options: str) -> Path:
    """``pip install --no-deps --target .venv/trainer-packages/<name> <requirements>``, once (kept while the pinned
    requirements are the same)."""
    target, stamp = PACKAGES / name, "\n".join(requirements)
    if (target / ".requirements").is_file() and (target / ".requirements").read_text() == stamp:
        return target
    partial = PACKAGES / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(partial), *options]
    subprocess.run([*command, *requirements], check=True, timeout=600)
    (partial / ".requirements").write_text(stamp)
    partial.rename(target)
    return target


@contextmanager
def boom_server(tmp: Path, *args: str, config: str | None = None) -> Iterator[RunningServer]:
    """A real reward server (``args`` and ``config`` as :func:`conftest.start_server` takes them) that also serves
    :data:`PLUGIN`'s failing reward."""
    (tmp / "boom.py").write_text(PLUGIN)
    running = start_server(tmp, "--rewards-from", str(tmp / "boom.py"), *args, config=config)
    try:
        yield running
    finally:
        stop_server(running)
