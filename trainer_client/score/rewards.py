"""The rewards ``reward-score`` applies: from ``--reward``/``--param`` flags or a YAML file, checked against the
server's catalogue before any line is read."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from trainer_client.catalogue import RewardInfo
from trainer_client.convert import RewardLike, reward_spec
from trainer_client.errors import RecipeError
from trainer_client.preflight import check_reward, find_reward


def load_rewards_file(path: str | Path) -> list[RewardLike]:
    """Rewards from YAML: a list of names / {name, weight, params}, or a mapping with ``rewards:`` (a recipe)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"cannot read rewards file {path}: {exc}") from exc
    if isinstance(data, Mapping):
        data = data.get("rewards")
    if not isinstance(data, list) or not data:
        raise RecipeError(f"rewards file {path}: expected a list of rewards (or a mapping with a 'rewards' list)")
    for i, reward in enumerate(data):
        reward_spec(reward, i)
    return data


def rewards_from_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rewards from --rewards-file, then --reward NAME[:WEIGHT], then --param NAME.KEY=VALUE on top.

    Example:
        >>> args = argparse.Namespace(rewards_file=None, reward=["xml_count:0.5"], param=["xml_count.value=1"])
        >>> rewards_from_args(args)
        [{'name': 'xml_count', 'weight': 0.5, 'params': {'value': 1}}]
    """
    rewards: list[dict[str, Any]] = []
    if args.rewards_file:
        for r in load_rewards_file(args.rewards_file):
            rewards.append({"name": r} if isinstance(r, str) else dict(r))
    for text in args.reward:
        name, _, weight = text.partition(":")
        entry: dict[str, Any] = {"name": name.strip()}
        if weight:
            try:
                entry["weight"] = float(weight)
            except ValueError:
                raise RecipeError(f"--reward {text!r}: weight {weight!r} is not a number") from None
        rewards.append(entry)
    by_name = {r["name"]: r for r in rewards}
    for text in args.param:
        key, sep, raw = text.partition("=")
        name, dot, param = key.rpartition(".")
        if not sep or not dot or name not in by_name:
            raise RecipeError(f"--param {text!r}: expected REWARD.PARAM=VALUE for a reward given with --reward")
        by_name[name].setdefault("params", {})[param] = yaml.safe_load(raw)
    if not rewards:
        raise RecipeError("name at least one reward (--reward NAME or --rewards-file FILE)")
    return rewards


def needed_fields(rewards: Sequence[Mapping[str, Any]], catalogue: Sequence[RewardInfo]) -> dict[str, str]:
    """Check rewards against the catalogue; the fields every line must carry (field → the first reward reading it)."""
    needed: dict[str, str] = {}
    for reward in rewards:
        params = reward.get("params") or {}
        info = check_reward(reward["name"], params, catalogue)
        for name in info.fields_read(params):
            needed.setdefault(name, reward["name"])
    return needed


def id_readers(rewards: Sequence[Mapping[str, Any]], catalogue: Sequence[RewardInfo]) -> list[str]:
    """The rewards (as named) that read ``completion_ids``: every line must carry them."""
    return [r["name"] for r in rewards if find_reward(r["name"], catalogue).reads_completion_ids]
