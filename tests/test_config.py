"""Configuration: YAML file and flags, and clear errors for bad settings."""

from __future__ import annotations

import pytest
from conftest import run_module

from reward_server.config import ConfigError, ServerConfig, load_config


def test_flags_override_file_override_defaults(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("port: 6000\nworkers: 3\nmath_timeout_s: 2\n")
    config = load_config(path, port=7000, host=None)
    assert (config.port, config.workers, config.math_timeout_s, config.host) == (7000, 3, 2.0, "127.0.0.1")
    assert load_config() == ServerConfig()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("prot: 1\n", "unknown setting 'prot' (did you mean 'port'?)"),
        ("port: fast\n", "'port' must be int"),
        ("- 1\n", "expected a mapping"),
    ],
)
def test_bad_config_names_the_setting(tmp_path, text, needle) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(path)
    assert needle in str(caught.value)


def test_cli_reports_bad_config_and_exits_nonzero(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("wrokers: 2\n")
    result = run_module("reward_server", "--config", str(path))
    assert result.returncode == 2
    assert "unknown setting 'wrokers' (did you mean 'workers'?)" in result.stderr
