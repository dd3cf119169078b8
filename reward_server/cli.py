"""``reward-server`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from reward_server import __version__
from reward_server.auth import AuthConfigError
from reward_server.config import ConfigError, load_config
from reward_server.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reward-server", description="gRPC reward service for GRPO training (reward.v1.RewardService)."
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on; 0 picks a free one (default 50051)")
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings (keys as in ServerConfig)")
    parser.add_argument("--workers", type=int, help="scoring worker processes; 0 = threads (default min(4, CPUs))")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ... (default INFO)")
    parser.add_argument(
        "--enable-sentiment", action="store_true", default=None, help="load the sentiment model (sentiment_match)"
    )
    parser.add_argument(
        "--sentiment-model", help="Hugging Face id or local directory of the sentiment classifier (enables it)"
    )
    parser.add_argument(
        "--reward-model",
        dest="reward_models",
        action="append",
        metavar="NAME=ID_OR_DIR",
        help="serve a sequence-classification reward model as reward NAME (repeatable; see README: Reward models)",
    )
    parser.add_argument("--device", help="device of the models: auto, cpu, cuda, cuda:N (default auto: a GPU if any)")
    security = parser.add_argument_group("security (see README: Operating the service)")
    security.add_argument("--auth-file", help="YAML of teams and token hashes: require 'authorization: Bearer' tokens")
    security.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="listen on a non-loopback address without auth (refused otherwise)",
    )
    security.add_argument("--tls-cert", dest="tls_cert_file", help="PEM certificate chain: serve TLS")
    security.add_argument("--tls-key", dest="tls_key_file", help="PEM private key of --tls-cert")
    security.add_argument("--tls-client-ca", dest="tls_client_ca_file", help="PEM CA: require client certs (mTLS)")
    security.add_argument(
        "--no-reflection",
        dest="reflection",
        action="store_false",
        default=None,
        help="switch gRPC server reflection off",
    )
    plugins = parser.add_argument_group("your own rewards (see README: Your own rewards)")
    plugins.add_argument(
        "--rewards-from",
        action="append",
        metavar="SOURCE",
        help="serve the rewards of a Python file or importable module (repeatable)",
    )
    plugins.add_argument(
        "--rewards-entry-points",
        action="store_true",
        default=None,
        help="also serve the modules installed packages list in the entry-point group grpo_rewards.rewards",
    )
    plugins.add_argument(
        "--reload-on-change",
        action="store_true",
        default=None,
        help="reload the reward code when a source file changes (SIGHUP always reloads)",
    )
    code = parser.add_argument_group("code execution (see README: Code execution)")
    code.add_argument(
        "--no-code-execution",
        dest="code_execution",
        action="store_false",
        default=None,
        help="switch the code-execution rewards off",
    )
    code.add_argument("--code-engine", help="engine that runs programs: local (bubblewrap sandbox, default), ...")
    code.add_argument("--sandboxfusion-url", metavar="URL", help="SandboxFusion server of the sandboxfusion engine")
    code.add_argument("--piston-url", metavar="URL", help="Piston server of the piston engine")
    code.add_argument(
        "--unsafe-run-code-without-sandbox",
        action="store_true",
        default=None,
        help="run model-written code with NO sandbox (rlimits only): never on a machine that matters",
    )
    ops = parser.add_argument_group("operations")
    ops.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (0 = a free one)")
    ops.add_argument("--metrics-host", help="address of the /metrics endpoint (default 127.0.0.1)")
    ops.add_argument("--log-json", action="store_true", default=None, help="log one JSON object per line")
    ops.add_argument(
        "--http-port", type=int, help="also serve HTTP/JSON on this port, same host (0 = a free one; see README)"
    )
    ops.add_argument("--grace-s", type=float, help="seconds in-flight calls get to finish on SIGTERM (default 30)")
    ops.add_argument(
        "--reuse-port",
        action="store_true",
        default=None,
        help="share the port with other processes (SO_REUSEPORT); off: a port in use is an error",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Every flag's dest is the name of its ServerConfig setting; unset flags are None and left to the file.
        overrides = vars(args)
        config = load_config(overrides.pop("config"), **overrides)
        config.validate()
    except ConfigError as exc:  # one line per problem where there are several (profiles)
        for problem in getattr(exc, "problems", None) or [str(exc)]:
            print(f"reward-server: {problem}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, json_lines=config.log_json)
    import reward_server.rewards  # noqa: F401 - registers the catalogue
    from reward_server.models import ModelLoadError
    from reward_server.plugins import PluginError
    from reward_server.server import AddressInUse, serve
    from reward_server.transport.profiles import ProfileError

    try:
        asyncio.run(serve(config))
    except (PluginError, ProfileError) as exc:  # reward code or profiles that cannot be served: a line per problem
        for problem in exc.problems:
            print(f"reward-server: {problem}", file=sys.stderr)
        return 2
    except (ConfigError, ModelLoadError, AddressInUse, AuthConfigError) as exc:  # the configuration is refused
        print(f"reward-server: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"reward-server: {exc}", file=sys.stderr)
        return 1
    return 0
