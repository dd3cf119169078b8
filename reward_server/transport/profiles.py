"""Profiles: what a trainer's reward URL scores (``/openrlhf/<profile>``, ``/slime/<profile>``, ``/gym/<profile>``).

A trainer can configure only a URL, so the rewards, their weights and params, where the trainer's label goes and
what a failed sample turns into live in the server's config file under ``profiles:``::

    profiles:
      gsm8k:
        rewards: [{name: xml_correctness}, {name: xml_tag_count, weight: 0.5}]   # as RewardSpec
        label_field: answer

Every profile is checked before anything loads (:func:`check_profiles`): its shape and the built-in rewards when the
config is validated, the plugins' rewards once they are imported, and the rewards of reward models and judges once
they register. An unknown key, an unknown reward or a bad param refuses the start (exit 2) with one line per problem.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import json_format

from reward.v1 import reward_pb2
from reward_server.config import ConfigError
from reward_server.errors import RewardServiceError
from reward_server.registry import Registry

#: Trailing special tokens OpenRLHF's ``query`` ends with (decoded with ``skip_special_tokens=False``).
DEFAULT_SPECIAL_TOKENS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end_of_text|>")
#: Each trainer's own timeout for one reward call, and the deadline a profile gets by default (below it, so the
#: trainer gets our answer, a marker or an error, before it gives up): OpenRLHF 180 s (aiohttp total), slime 120 s
#: (aiohttp total), NeMo Gym: none of its own, OpenRLHF's is used.
TRAINER_TIMEOUT_S = {"openrlhf": 180.0, "slime": 120.0, "gym": 180.0}
DEFAULT_DEADLINE_S = {trainer: timeout - 10.0 for trainer, timeout in TRAINER_TIMEOUT_S.items()}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Failure = Literal["marker", "mask", "error"]


class ProfileError(ConfigError):
    """Profiles that cannot be served; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Profile:
    """One profile of the config file (the keys of ``profiles.<name>``)."""

    name: str
    #: The rewards, as ``RewardSpec`` (name, weight, params), in the order they are scored and reported.
    rewards: tuple[reward_pb2.RewardSpec, ...]
    #: The sample field a trainer's label (ground truth) goes to.
    label_field: str = "answer"
    #: What OpenRLHF's ``scores`` (used to filter groups) carries: ``total`` or one of the profile's rewards.
    scores: str = "total"
    #: Stripped from the end of OpenRLHF's ``query`` (repeatedly, with whitespace between them).
    special_tokens: tuple[str, ...] = DEFAULT_SPECIAL_TOKENS
    #: ``auto``: a text prompt is sent as text, a list of messages as chat turns; ``chat``: a text prompt becomes
    #: one user turn (for rewards that read chat prompts).
    prompt_shape: Literal["auto", "chat"] = "auto"
    #: What a sample whose reward failed (reward error, unavailable dependency, time limit) turns into:
    #: ``mask`` (default: where the trainer can drop a sample, it is dropped: Gym's ``mask_sample: true``; OpenRLHF's
    #: and slime's HTTP protocols have no per-sample mask, so there it is the marker), ``marker`` (never dropped:
    #: ``failure_value`` plus a failure flag, also on Gym) or ``error`` (an HTTP error status naming the sample, so
    #: the trainer retries or stops). A reward that does not apply (NOT_APPLICABLE) is no failure.
    on_failure: Failure = "mask"
    #: The finite value a failed sample gets where a number must be sent (always flagged as failed beside it).
    failure_value: float = 0.0
    #: Seconds a call may take before its unfinished samples fail with TIME_LIMIT; None: the route's default,
    #: below the trainer's own timeout (:data:`DEFAULT_DEADLINE_S`).
    deadline_s: float | None = None
    #: slime: answer an object with every reward and the total under this key (slime's ``--reward-key``) instead
    #: of a bare number; it also carries ``failed`` (a bare number cannot say a sample failed: that is an error).
    slime_reward_key: str | None = None
    #: Also serve this profile's Gym routes at ``/seed_session`` and ``/verify``: a Gym agent posts to a resources
    #: server's ``http://host:port/verify`` and cannot add a path (one profile at most).
    gym_root: bool = False
    #: Gym: the dataset row's key that holds the label (``expected_answer`` in many Gym datasets); its value also
    #: goes to ``label_field``. None: every row key is a field of its own name, and none is copied.
    gym_label_key: str | None = None

    def deadline(self, trainer: str) -> float:
        return self.deadline_s if self.deadline_s is not None else DEFAULT_DEADLINE_S[trainer]

    @property
    def names(self) -> list[str]:
        """The rewards' names, as the trainer sees them (keys of extra_logs, reward_components, slime's object)."""
        return [spec.name for spec in self.rewards]

    def describe(self) -> dict[str, Any]:
        """The profile as JSON for ``GET /profiles``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rewards"}
        out["rewards"] = [json_format.MessageToDict(spec) for spec in self.rewards]
        out["special_tokens"] = list(self.special_tokens)
        out["deadline_s"] = {trainer: self.deadline(trainer) for trainer in DEFAULT_DEADLINE_S}
        return out


_KEYS = {f.name for f in dataclasses.fields(Profile)} - {"name"}
_BAD = object()  # a setting refused (its problem recorded): the profile keeps the default


def parse_profiles(raw: Mapping[str, Any] | None) -> tuple[dict[str, Profile], list[str]]:
    """The profiles of a config file's ``profiles:`` mapping, and one line per problem found in their shape.

    Example:
        >>> profiles, problems = parse_profiles({"p": {"rewards": [{"name": "xml_tag_count", "weight": 0.5}]}})
        >>> profiles["p"].names, profiles["p"].rewards[0].weight, problems
        (['xml_tag_count'], 0.5, [])
        >>> [line[:40] for line in parse_profiles({"p": {"rewards": [], "colour": 1}})[1]]
        ["profiles.p: unknown key 'colour'; known:", 'profiles.p.rewards: name at least one re']
    """
    profiles: dict[str, Profile] = {}
    problems: list[str] = []
    if raw is None:
        return profiles, problems
    if not isinstance(raw, Mapping):
        return profiles, [f"profiles: expected a mapping of profile name → settings, got {type(raw).__name__}"]
    for name, spec in raw.items():
        where = f"profiles.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{where}: a profile name is a URL path segment (letters, digits, '_', '.', '-')")
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: expected a mapping with rewards, got {type(spec).__name__}")
            continue
        problems += [f"{where}: unknown key {k!r}; known: {', '.join(sorted(_KEYS))}" for k in spec if k not in _KEYS]
        rewards = _rewards(where, spec.get("rewards"), problems)
        values: dict[str, Any] = {"name": name, "rewards": tuple(rewards)}
        for key in sorted(_KEYS - {"rewards"}):
            if key in spec:
                value = _setting(where, key, spec[key], problems)
                if value is not _BAD:
                    values[key] = value
        if rewards:  # checked on: its rewards get their own lines even when a setting is wrong
            profile = Profile(**values)
            if profile.scores != "total" and profile.scores not in profile.names:
                problems.append(
                    f"{where}.scores: {profile.scores!r} is neither 'total' nor one of its rewards ({profile.names})"
                )
            twice = sorted({n for n in profile.names if profile.names.count(n) > 1})
            if twice:
                problems.append(f"{where}.rewards: {', '.join(twice)} named twice (each reward once per profile)")
            profiles[name] = profile
    roots = [name for name, profile in profiles.items() if profile.gym_root]
    if len(roots) > 1:
        problems.append(f"profiles: gym_root is set on {', '.join(roots)}; the root /verify serves one profile")
    return profiles, problems


def _rewards(where: str, value: Any, problems: list[str]) -> list[reward_pb2.RewardSpec]:
    if not isinstance(value, list) or not value:
        problems.append(f"{where}.rewards: name at least one reward")
        return []
    specs = []
    for i, entry in enumerate(value):
        entry = {"name": entry} if isinstance(entry, str) else entry
        try:
            specs.append(json_format.ParseDict(entry, reward_pb2.RewardSpec()))
        except (json_format.ParseError, TypeError, AttributeError) as exc:
            why = " ".join(str(exc).split())  # one line per problem
            problems.append(f"{where}.rewards[{i}]: not a RewardSpec (name, weight, params): {why}")
    return specs


def _setting(where: str, key: str, value: Any, problems: list[str]) -> Any:
    """One setting checked for its type (and choices); a problem is recorded, the default kept."""
    bad = None
    if key in ("label_field", "scores") and not (isinstance(value, str) and value):
        bad = "a non-empty string"
    elif key in ("slime_reward_key", "gym_label_key") and not (value is None or (isinstance(value, str) and value)):
        bad = "a non-empty string or null"
    elif key == "special_tokens":
        if not (isinstance(value, list) and all(isinstance(t, str) and t for t in value)):
            bad = "a list of non-empty strings"
        else:
            value = tuple(value)
    elif key == "gym_root" and not isinstance(value, bool):
        bad = "true or false"
    elif key == "prompt_shape" and value not in ("auto", "chat"):
        bad = "'auto' or 'chat'"
    elif key == "on_failure" and value not in ("marker", "mask", "error"):
        bad = "'marker', 'mask' or 'error'"
    elif key == "failure_value":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            bad = "a finite number (it is what a trainer trains on, flagged as failed)"
        else:
            value = float(value)
    elif key == "deadline_s":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            bad = "a positive number of seconds or null"
        elif value is not None:
            value = float(value)
    if bad:
        problems.append(f"{where}.{key}: must be {bad}, got {value!r}")
        return _BAD
    return value


def check_profiles(
    raw: Mapping[str, Any] | None, registry: Registry, pending: Collection[str] = ()
) -> dict[str, Profile]:
    """The config's profiles, each reward and its params checked against ``registry``; raises ProfileError with
    one line per problem.

    ``pending`` names rewards that register later in the start-up (reward models, judges): a name among them that
    ``registry`` does not know yet is left to the next check, so the checks can run before anything loads (config
    validation with the built-ins, then with the plugins) and once more when everything is registered.

    Example:
        >>> from reward_server.registry import Registry
        >>> check_profiles({"p": {"rewards": [{"name": "my_judge"}]}}, Registry(), pending={"my_judge"})["p"].names
        ['my_judge']
        >>> check_profiles({"p": {"rewards": [{"name": "my_judg"}]}}, Registry(), pending={"my_judge"})
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        reward_server.transport.profiles.ProfileError: profiles.p.rewards[0] (my_judg): unknown reward 'my_judg'...
    """
    profiles, problems = parse_profiles(raw)
    for name, profile in profiles.items():
        for i, spec in enumerate(profile.rewards):
            where = f"profiles.{name}.rewards[{i}] ({spec.name})"
            if spec.HasField("weight") and not math.isfinite(spec.weight):
                problems.append(f"{where}: weight must be finite, got {spec.weight}")
            if spec.name in pending and spec.name not in registry:
                continue  # registers later in the start-up; checked then
            try:
                registry.get(spec.name).validate_params(dict(spec.params.items()))
            except RewardServiceError as exc:
                problems.append(f"{where}: {exc}")
    if problems:
        raise ProfileError(problems)
    return profiles
