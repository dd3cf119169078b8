"""What the server does with its judges at start-up and shutdown.

Each ``judges:`` entry becomes a reward of the catalogue, bound to its own :class:`JudgeClient`. A name that
is already a reward's, or an ``api_key_env`` that is not set, refuses the start (exit code 2, naming the
judge). An endpoint that does not answer is only a warning: judges often start after the reward server, and
until it answers its samples score NaN with an UNAVAILABLE note.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from reward_server.config import ConfigError
from reward_server.judges.client import JudgeClient
from reward_server.judges.reward import judge_reward
from reward_server.judges.spec import JudgeSpec
from reward_server.registry import Registry

log = logging.getLogger(__name__)


class Judges:
    """The clients of one server's judges, by judge name."""

    def __init__(self) -> None:
        self.clients: dict[str, JudgeClient] = {}

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self.clients.values()))
        self.clients.clear()


async def start_judges(specs: Mapping[str, JudgeSpec], registry: Registry) -> Judges:
    """Register every judge into ``registry`` with its client; warn about endpoints that do not answer yet."""
    judges = Judges()
    if specs:
        # httpx logs every request at INFO: one line per judge call would drown the server's own log.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
    try:
        for name, spec in specs.items():
            if name in registry:
                raise ConfigError(f"judges.{name}: {name!r} is already a reward's name or alias; pick another")
            key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
            if spec.api_key_env and not key:
                raise ConfigError(
                    f"judges.{name}: api_key_env names {spec.api_key_env}, which is not set in the server's environment"
                )
            client = judges.clients[name] = JudgeClient(spec, key)
            registry.add(judge_reward(spec, client))
    except BaseException:
        await judges.close()
        raise
    problems = await asyncio.gather(*(client.probe() for client in judges.clients.values()))
    for spec, problem in zip(specs.values(), problems, strict=True):
        if problem:
            log.warning("judge %s: %s; its samples score NaN (unavailable) until it answers", spec.name, problem)
        else:
            log.info("judge %s: model %s at %s (%s)", spec.name, spec.model, spec.public_endpoint, spec.mode)
    return judges
