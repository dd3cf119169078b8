"""``python -m reward_server.auth`` (issue 18 §4): a token in on stdin, a ready-to-paste auth-file entry out, which a
real server then accepts; a broken auth file exits 2 like other config errors; reward-score says how to give a token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, run_module, start_server, stop_server

from reward_server.auth import token_sha256

REWARD_SCORE = str(Path(sys.executable).parent / "reward-score")
TOKEN = "a-team-token-for-the-test"


def auth_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reward_server.auth", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_help_and_the_entry_it_prints() -> None:
    helped = auth_cli("--help")
    assert helped.returncode == 0 and helped.stderr == ""
    assert "--team" in helped.stdout and "stdin" in helped.stdout
    done = auth_cli("--team", "research", "--max-concurrent-requests", "4", stdin=TOKEN + "\n")
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout  # the hash, never the token
    assert yaml.safe_load(done.stdout) == {
        "teams": {"research": {"token_sha256": token_sha256(TOKEN), "max_concurrent_requests": 4}}
    }
    assert done.stdout.startswith("# --auth-file entry for team research")
    by_flag = auth_cli("--token", TOKEN)
    assert yaml.safe_load(by_flag.stdout)["teams"]["my-team"]["token_sha256"] == token_sha256(TOKEN)
    empty = auth_cli(stdin="\n")
    assert empty.returncode == 2 and "no token: give it on stdin or with --token" in empty.stderr


def test_the_printed_entry_is_a_working_auth_file_and_reward_score_says_how_to_give_a_token(tmp_path) -> None:
    auth = tmp_path / "auth.yaml"
    auth.write_text(auth_cli("--team", "research", stdin=TOKEN).stdout)
    server = start_server(tmp_path, "--workers", "0", "--auth-file", str(auth))
    try:
        env = {k: v for k, v in os.environ.items() if k != "REWARD_SERVICE_TOKEN"}

        def listing(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
            return subprocess.run(
                [REWARD_SCORE, "--list", "--target", server.address],
                capture_output=True,
                text=True,
                cwd=REPO,
                env={**env, **extra_env},
                timeout=60,
            )

        refused = listing({})
        assert refused.returncode == 1
        assert "refused the call (UNAUTHENTICATED" in refused.stderr
        assert refused.stderr.rstrip().endswith("give --token or set REWARD_SERVICE_TOKEN")
        allowed = listing({"REWARD_SERVICE_TOKEN": TOKEN})
        assert allowed.returncode == 0, allowed.stderr
        assert allowed.stdout.split()[:6] == ["name", "aliases", "fields", "params", "source", "enabled"]
    finally:
        stop_server(server)


def test_a_broken_auth_file_exits_2_like_a_config_error(tmp_path) -> None:
    auth = tmp_path / "auth.yaml"
    auth.write_text("teams:\n  research:\n    token_sha256: not-a-hash\n")
    done = run_module("reward_server", "--port", "0", "--workers", "0", "--auth-file", str(auth), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "token_sha256 must be 64 hex digits" in done.stderr and "Traceback" not in done.stderr
