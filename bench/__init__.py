"""Benchmarks of the reward service: run each script with ``python -m bench.<name>`` (see BENCHMARKS.md)."""
