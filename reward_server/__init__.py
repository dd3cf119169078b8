"""gRPC reward service for GRPO training: scores LLM completions with named reward functions."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grpo-rewards")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+local"
