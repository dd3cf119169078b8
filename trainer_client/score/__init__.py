"""``reward-score``'s parts: reading JSONL lines, naming the rewards, scoring in batches, reporting, listing.

The command itself (arguments, exit codes) is :mod:`trainer_client.score_cli`.
"""
