"""Server configuration: defaults, overridden by a YAML file, overridden by command-line flags."""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reward_server.settings import WorkerSettings


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class ServerConfig:
    """Every server setting; the YAML config file uses these names as keys."""

    #: Address to listen on (loopback by default).
    host: str = "127.0.0.1"
    #: Port to listen on; 0 picks a free port (the printed address tells which).
    port: int = 50051
    #: Scoring worker processes (0 = score in threads of the server process).
    workers: int = dataclasses.field(default_factory=_default_workers)
    #: Largest request or response accepted, in bytes (gRPC refuses larger ones).
    max_message_bytes: int = 64 * 1024 * 1024
    #: Most samples one Score call may carry.
    max_samples_per_request: int = 65536
    #: Most rewards one Score call may name.
    max_rewards_per_request: int = 64
    #: Hard time limit per math_equivalence sample, in seconds.
    math_timeout_s: float = 5.0
    #: Seconds in-flight calls get to finish on shutdown.
    grace_s: float = 30.0
    #: Serve gRPC server reflection (buf curl / grpcurl without a .proto).
    reflection: bool = True
    #: Logging level name.
    log_level: str = "INFO"
    #: Load the sentiment model and enable sentiment_match (flag --enable-sentiment).
    enable_sentiment: bool = False
    #: Sentiment classifier: a Hugging Face id or a local directory.
    sentiment_model: str = "oliverguhr/german-sentiment-bert"
    #: Device of the models: auto (first GPU if any, else cpu), cpu, cuda or cuda:N.
    device: str = "auto"
    #: Per model: most texts per batch, gathered across concurrent requests.
    model_max_batch_size: int = 128
    #: Per model: most padded tokens in one forward pass (a batch is split to fit).
    model_max_batch_tokens: int = 65536
    #: Per model: longest a text waits for its batch to fill, in milliseconds.
    model_max_wait_ms: float = 5.0
    #: Per model: most texts waiting; beyond it calls get RESOURCE_EXHAUSTED.
    model_max_queue: int = 16384
    #: Per model: reference texts whose model output is cached (LRU); 0 = no cache.
    model_cache_size: int = 16384
    #: With a model loaded: Python's GIL switch interval (ms); lower lets the model thread's kernel
    #: launches through sooner while request threads run Python (Python's default is 5).
    gil_switch_interval_ms: float = 5.0

    def worker_settings(self) -> WorkerSettings:
        return WorkerSettings(math_timeout_s=self.math_timeout_s)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class ConfigError(ValueError):
    """A config file or flag value that cannot be used; the message names it."""


def load_config(path: str | Path | None = None, **overrides: Any) -> ServerConfig:
    """Defaults ← YAML file at ``path`` ← ``overrides`` (None values are ignored)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path}: expected a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(ServerConfig)}
    config = ServerConfig()
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown setting {key!r}{hint}; known: {', '.join(sorted(fields))}")
        expected = type(getattr(config, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"setting {key!r} must be {expected.__name__}, got {value!r}")
        setattr(config, key, value)
    return config
