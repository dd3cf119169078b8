"""Fail-fast checks of a recipe against the live reward service, before any model is loaded."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from trainer_client.catalogue import Catalogue, RewardInfo
from trainer_client.client import RetryPolicy, RewardClient
from trainer_client.errors import PreflightError, RewardServiceError
from trainer_client.recipes import Recipe, RewardServerSection


def make_client(section: RewardServerSection) -> RewardClient:
    """A :class:`RewardClient` from a recipe's ``reward_server`` section (token read from ``token_env``)."""
    return RewardClient(
        section.target,
        deadline_s=section.deadline_s,
        token=os.environ.get(section.token_env) or None,
        tls=section.tls,
        client_cert=section.client_cert,
        client_key=section.client_key,
        retry=RetryPolicy(max_attempts=section.max_attempts),
    )


#: What to do about each refusal of the preflight calls (the default hints speak to a recipe's keys).
HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: (
        "the server wants a token: set REWARD_SERVICE_TOKEN (or the variable reward_server.token_env names)"
    ),
    grpc.StatusCode.PERMISSION_DENIED: "the server refused this client's token or certificate",
    grpc.StatusCode.UNAVAILABLE: "start it with `reward-server` or fix reward_server.target",
}


def check_service(client: RewardClient, hints: Mapping[grpc.StatusCode, str] | None = None) -> list[RewardInfo]:
    """Health (SERVING) and the reward catalogue's rewards (see :func:`service_catalogue`)."""
    return service_catalogue(client, hints).rewards


def service_catalogue(client: RewardClient, hints: Mapping[grpc.StatusCode, str] | None = None) -> Catalogue:
    """Health (SERVING) and the reward catalogue, or a :class:`PreflightError` saying what is wrong and what to do
    about it (``hints``: status code → advice, over :data:`HINTS`; a CLI names its own flags there)."""
    try:
        serving = client.health()
        catalogue = client.catalogue()
    except RewardServiceError as exc:
        hint = {**HINTS, **(hints or {})}.get(exc.code, HINTS[grpc.StatusCode.UNAVAILABLE])
        refused = exc.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        raise PreflightError(
            f"reward service at {client.target} {'refused the call' if refused else 'is not reachable'} "
            f"({exc.code.name}: {exc.details}); {hint}"
        ) from exc
    if not serving:
        raise PreflightError(f"reward service at {client.target} is up but not SERVING (shutting down?)")
    return catalogue


def find_reward(name: str, catalogue: Sequence[RewardInfo]) -> RewardInfo:
    """The catalogue entry for a name or alias, or a PreflightError with the closest names."""
    for info in catalogue:
        if name == info.name or name in info.aliases:
            return info
    known = [n for info in catalogue for n in (info.name, *info.aliases)]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise PreflightError(f"reward {name!r} is not known to the reward service{hint}")


def check_params(name: str, info: RewardInfo, params: Mapping[str, Any]) -> None:
    """Param names and types against the catalogue (the server checks them again on every call)."""
    declared = {p.name: p for p in info.params}
    for key, value in params.items():
        param = declared.get(key)
        if param is None:
            raise PreflightError(
                f"reward {name!r}: unknown param {key!r}; known params: {', '.join(sorted(declared)) or 'none'}"
            )
        if not param.accepts(value):
            kind = {"integer": "an integer", "string_list": "a list of strings"}.get(param.type, f"a {param.type}")
            raise PreflightError(f"reward {name!r}: param {key!r} must be {kind}, got {value!r}")


def check_reward(name: str, params: Mapping[str, Any], catalogue: Sequence[RewardInfo]) -> RewardInfo:
    """One reward exists, is enabled, and its params fit; its catalogue entry (shared by every CLI's preflight)."""
    info = find_reward(name, catalogue)
    if not info.available:
        raise PreflightError(f"reward {name!r} is not enabled on this server: {info.unavailable_reason}")
    check_params(name, info, params)
    return info


def check_rewards(recipe: Recipe, catalogue: Sequence[RewardInfo]) -> dict[str, RewardInfo]:
    """Every reward of the recipe exists, is enabled, and its params fit; requested name → catalogue entry."""
    return {reward.name: check_reward(reward.name, reward.params, catalogue) for reward in recipe.rewards}


def check_fields(recipe: Recipe, rewards: Mapping[str, RewardInfo], example: Mapping[str, Any]) -> None:
    """Every field a reward reads is an example column (TRL passes example columns as ``fields``).

    ``completion_ids`` need no column: TRL hands them to the reward functions, and the adapter sends them.
    """
    have = sorted(k for k in example if k != "prompt")
    for reward in recipe.rewards:
        for needed in rewards[reward.name].fields_read(reward.params):
            if needed not in example:
                raise PreflightError(
                    f"reward {reward.name!r} reads field {needed!r}, but the dataset examples only have {have}; "
                    f"map it with --set dataset.columns.{needed}=<source column>"
                )


def preflight(recipe: Recipe, client: RewardClient, example: Mapping[str, Any] | None = None) -> dict[str, RewardInfo]:
    """Service health, rewards and params, and (given an example) the fields: everything before a model loads."""
    rewards = check_rewards(recipe, check_service(client))
    if example is not None:
        check_fields(recipe, rewards, example)
    return rewards
