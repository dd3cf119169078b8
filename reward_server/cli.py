"""``reward-server`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from reward_server import __version__
from reward_server.config import ConfigError, load_config


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
    parser.add_argument("--sentiment-model", help="Hugging Face id or local directory of the sentiment classifier")
    parser.add_argument("--device", help="device of the models: auto, cpu, cuda, cuda:N (default auto: a GPU if any)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(
            args.config,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            enable_sentiment=args.enable_sentiment,
            sentiment_model=args.sentiment_model,
            device=args.device,
        )
    except ConfigError as exc:
        print(f"reward-server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import reward_server.rewards  # noqa: F401 - registers the catalogue
    from reward_server.models import ModelLoadError
    from reward_server.server import serve

    try:
        asyncio.run(serve(config))
    except (OSError, ConfigError, ModelLoadError) as exc:
        print(f"reward-server: {exc}", file=sys.stderr)
        return 1
    return 0
