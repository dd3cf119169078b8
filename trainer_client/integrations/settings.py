"""What every trainer integration is configured with: keyword arguments first, environment variables as fallback.

A trainer hands an integration only what its own config carries (verl's ``reward_kwargs``, a module path for
OpenRLHF, slime and AReaL), so every setting can also come from the environment of the trainer's processes:

=====================  ==================================  ===================================================
keyword                environment variable                meaning
=====================  ==================================  ===================================================
``target``             ``REWARD_SERVICE_TARGET``           reward service address (as ``RewardClient`` takes it)
``rewards``            ``REWARD_SERVICE_REWARDS``          names or ``{"name", "weight", "params"}`` specs, as
                                                           ``remote_reward_funcs`` takes them; the variable is a
                                                           JSON list or comma-separated names
``label_field``        ``REWARD_SERVICE_LABEL_FIELD``      the sample field the trainer's label goes to
``token``              ``REWARD_SERVICE_TOKEN``            bearer token
``deadline_s``         ``REWARD_SERVICE_DEADLINE_S``       per-call deadline, retries included
``failure_score``      ``REWARD_SERVICE_FAILURE_SCORE``    the finite value a failed sample carries where a
                                                           trainer cannot take NaN (always flagged as failed)
``window_s``           ``REWARD_SERVICE_WINDOW_S``         how long concurrent calls are collected into one
``max_batch``          ``REWARD_SERVICE_MAX_BATCH``        most samples per Score call
=====================  ==================================  ===================================================
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainer_client.convert import RewardLike, reward_name, reward_spec

ENV = {
    "target": "REWARD_SERVICE_TARGET",
    "rewards": "REWARD_SERVICE_REWARDS",
    "label_field": "REWARD_SERVICE_LABEL_FIELD",
    "token": "REWARD_SERVICE_TOKEN",
    "deadline_s": "REWARD_SERVICE_DEADLINE_S",
    "failure_score": "REWARD_SERVICE_FAILURE_SCORE",
    "window_s": "REWARD_SERVICE_WINDOW_S",
    "max_batch": "REWARD_SERVICE_MAX_BATCH",
}
DEFAULT_TARGET = "127.0.0.1:50051"


@dataclass(frozen=True)
class Settings:
    """One integration's resolved settings (plain values, so an integration pickles with them).

    Example:
        >>> s = Settings.resolve(target="h:1", rewards="xml_correctness, xml_integer", deadline_s="5")
        >>> s.target, s.names, s.deadline_s, s.label_field
        ('h:1', ['xml_correctness', 'xml_integer'], 5.0, 'answer')
        >>> Settings.resolve(target="h:1", rewards=[]).names
        Traceback (most recent call last):
        ...
        ValueError: rewards: name at least one reward (keyword 'rewards' or REWARD_SERVICE_REWARDS)
    """

    target: str
    rewards: tuple[RewardLike, ...]
    label_field: str = "answer"
    token: str | None = None
    deadline_s: float = 60.0
    failure_score: float = 0.0
    window_s: float = 0.05
    max_batch: int = 1024

    @property
    def names(self) -> list[str]:
        """The rewards as the caller named them (the keys of every per-reward result)."""
        return [reward_name(r) for r in self.rewards]

    def key(self) -> str:
        """A stable text form, for caching one scorer per configuration in a process."""
        return json.dumps(
            [
                self.target,
                self.rewards,
                self.label_field,
                self.token,
                self.deadline_s,
                self.failure_score,
                self.window_s,
                self.max_batch,
            ],
            sort_keys=True,
            default=str,
        )

    @classmethod
    def resolve(
        cls, *, reserved: Sequence[str] = (), defaults: Mapping[str, Any] | None = None, **given: Any
    ) -> Settings:
        """Settings from keyword arguments (None = not given), then the environment, then ``defaults``.

        ``reserved`` are result keys a reward name must not take (verl's ``score`` and ``failed``).
        """
        unknown = set(given) - set(ENV)
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}; known: {sorted(ENV)}")
        base = {"target": DEFAULT_TARGET, **(defaults or {})}
        raw = {k: _first(given.get(k), os.environ.get(v), base.get(k)) for k, v in ENV.items()}
        rewards = _rewards(raw["rewards"])
        for i, reward in enumerate(rewards):
            reward_spec(reward, i)  # a malformed spec fails here, at start-up, naming its index
        names = [reward_name(r) for r in rewards]
        clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(reserved)))
        if clash:
            raise ValueError(f"rewards: names {clash} are listed twice or take a result key {list(reserved)}")
        out = {"target": str(raw["target"]), "rewards": tuple(rewards)}
        if raw["label_field"] is not None:
            out["label_field"] = str(raw["label_field"])
        if raw["token"]:
            out["token"] = str(raw["token"])
        for name in ("deadline_s", "failure_score", "window_s"):
            if raw[name] is not None:
                out[name] = _number(name, raw[name], positive=name == "deadline_s")
        if raw["max_batch"] is not None:
            out["max_batch"] = int(_number("max_batch", raw["max_batch"], positive=True))
        return cls(**out)


def _first(*values: Any) -> Any:
    """The first value that is given (None and "" are not)."""
    return next((v for v in values if v is not None and v != ""), None)


def _rewards(value: Any) -> list[RewardLike]:
    if value is None or value == "" or value == []:
        raise ValueError(f"rewards: name at least one reward (keyword 'rewards' or {ENV['rewards']})")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{ENV['rewards']}: not a JSON list ({exc.msg} at column {exc.colno})") from None
        else:
            value = [name.strip() for name in text.split(",") if name.strip()]
    if isinstance(value, str | Mapping) or not isinstance(value, Sequence):
        value = [value]
    value = [_plain(r) for r in value]
    if not value:
        raise ValueError(f"rewards: name at least one reward (keyword 'rewards' or {ENV['rewards']})")
    return value


def _plain(value: Any) -> Any:
    """OmegaConf containers (verl hands ``reward_kwargs`` over as ``DictConfig``/``ListConfig``) as dicts and lists.

    Example:
        >>> _plain((("a", 1),)), _plain({"p": [1, 2]})
        ([['a', 1]], {'p': [1, 2]})
    """
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def _number(name: str, value: Any, *, positive: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number (keyword or {ENV[name]}), got {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise ValueError(f"{name}: expected a finite{' positive' if positive else ''} number, got {value!r}")
    return number
