"""Per-team bearer-token auth and per-team limits, configured by an auth file.

The file holds only SHA-256 hashes of tokens, never tokens::

    teams:
      trainer:
        token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        max_concurrent_requests: 8      # optional
        max_samples_per_second: 20000   # optional

``python -m reward_server.auth --team NAME`` reads the token from stdin (or ``--token``) and prints a ready-to-paste
entry for that file.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reward_server.errors import ResourceExhausted

_TEAM_KEYS = {"token_sha256", "max_concurrent_requests", "max_samples_per_second"}


class AuthConfigError(ValueError):
    """An auth file that cannot be used; the message names the team and key."""


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a token, as the auth file stores it.

    Example:
        >>> token_sha256("test")
        '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
    """
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class TeamLimiter:
    """Concurrency cap and a samples-per-second token bucket for one team (thread-safe)."""

    max_concurrent: int | None = None
    samples_per_second: float | None = None
    _in_flight: int = 0
    _tokens: float = 0.0
    _stamp: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._tokens = self.samples_per_second or 0.0

    def acquire(self, team: str, samples: int) -> None:
        """Admit one request of ``samples`` samples or raise ResourceExhausted with a retry hint."""
        with self._lock:
            if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
                raise ResourceExhausted(
                    f"team {team!r} has {self._in_flight} requests in flight (limit {self.max_concurrent}); "
                    "retry after 0.2 s",
                    retry_after_s=0.2,
                )
            if self.samples_per_second:
                now = time.monotonic()
                # A request larger than one second's budget is admitted when the bucket is full.
                capacity = max(self.samples_per_second, samples)
                self._tokens = min(capacity, self._tokens + (now - self._stamp) * self.samples_per_second)
                self._stamp = now
                if self._tokens < samples:
                    wait = (samples - self._tokens) / self.samples_per_second
                    raise ResourceExhausted(
                        f"team {team!r} is over its limit of {self.samples_per_second:g} samples/s; "
                        f"retry after {wait:.2f} s",
                        retry_after_s=wait,
                    )
                self._tokens -= samples
            self._in_flight += 1

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1


@dataclass
class Team:
    """One team of the auth file."""

    name: str
    token_hash: str
    limiter: TeamLimiter


class Authenticator:
    """Maps bearer tokens to teams by their hash."""

    def __init__(self, teams: list[Team]) -> None:
        self._by_hash = {t.token_hash: t for t in teams}

    def team_for(self, token: str) -> Team | None:
        # Looked up by the token's SHA-256, never by the token: timing reveals nothing about a valid token.
        return self._by_hash.get(token_sha256(token))

    @classmethod
    def from_file(cls, path: str | Path) -> Authenticator:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise AuthConfigError(f"cannot read auth file {path}: {exc}") from exc
        teams = data.get("teams") if isinstance(data, dict) else None
        if not isinstance(teams, dict) or not teams:
            raise AuthConfigError(f"auth file {path}: expected 'teams: {{<team>: {{token_sha256: ...}}}}'")
        return cls([_team(path, name, spec) for name, spec in teams.items()])


def _team(path: str | Path, name: str, spec: Any) -> Team:
    where = f"auth file {path}, team {name!r}"
    if not isinstance(spec, dict):
        raise AuthConfigError(f"{where}: expected a mapping with token_sha256")
    unknown = set(spec) - _TEAM_KEYS
    if unknown:
        raise AuthConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_TEAM_KEYS)}")
    digest = str(spec.get("token_sha256", "")).lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise AuthConfigError(f"{where}: token_sha256 must be 64 hex digits (the SHA-256 of the token, not the token)")
    limits = {}
    for key in ("max_concurrent_requests", "max_samples_per_second"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise AuthConfigError(f"{where}: {key} must be a positive number, got {value!r}")
        limits[key] = value
    limiter = TeamLimiter(
        max_concurrent=None if limits["max_concurrent_requests"] is None else int(limits["max_concurrent_requests"]),
        samples_per_second=limits["max_samples_per_second"],
    )
    return Team(name, digest, limiter)


def team_entry(
    team: str, token: str, max_concurrent: int | None = None, samples_per_second: float | None = None
) -> str:
    """The auth file's YAML for one team (under ``teams:``), with the token's hash, never the token.

    Example:
        >>> print(team_entry("trainer", "test", max_concurrent=8))
        teams:
          trainer:
            token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
            max_concurrent_requests: 8
    """
    spec: dict[str, Any] = {"token_sha256": token_sha256(token)}
    if max_concurrent is not None:
        spec["max_concurrent_requests"] = max_concurrent
    if samples_per_second is not None:
        spec["max_samples_per_second"] = samples_per_second
    return yaml.safe_dump({"teams": {team: spec}}, sort_keys=False).rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m reward_server.auth``: a token in, an auth-file entry out."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m reward_server.auth",
        description="Print the auth file entry for a team's token: the token's SHA-256, never the token. "
        "The token is read from stdin (one line) unless --token gives it (which leaves it in your shell history).",
        epilog="example: openssl rand -hex 32 | tee trainer.token | python -m reward_server.auth --team trainer",
    )
    parser.add_argument("--team", default="my-team", help="the team's name in the auth file (default: my-team)")
    parser.add_argument("--token", help="the token (default: read one line from stdin)")
    parser.add_argument("--max-concurrent-requests", type=int, help="the team's cap on requests in flight")
    parser.add_argument("--max-samples-per-second", type=float, help="the team's sample rate limit")
    parser.add_argument("legacy_token", nargs="?", help=argparse.SUPPRESS)  # the old form: the token as argument
    args = parser.parse_args(argv)
    token = args.token or args.legacy_token
    if token is None:
        if sys.stdin.isatty():
            print("paste the token and press Enter:", file=sys.stderr)
        token = sys.stdin.readline().strip()
    if not token:
        parser.error("no token: give it on stdin or with --token")
    for key in ("max_concurrent_requests", "max_samples_per_second"):
        if getattr(args, key) is not None and getattr(args, key) <= 0:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    print(f"# --auth-file entry for team {args.team} (a second team goes under the same teams: key)")
    print(team_entry(args.team, token, args.max_concurrent_requests, args.max_samples_per_second))
    return 0


if __name__ == "__main__":
    sys.exit(main())
