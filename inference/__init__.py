"""Serving trained LoRA adapters with vLLM and evaluating them against the reward service."""
