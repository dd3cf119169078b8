"""The reward service as the reward backend of other trainers, in their own calling conventions.

One module per trainer, each a thin layer over :class:`~trainer_client.client.RewardClient` through
:class:`~trainer_client.integrations.scorer.RemoteScorer` (picklable, connecting lazily in each process, coalescing
concurrent calls into one Score call), configured by keyword arguments with environment variables as fallback
(:mod:`~trainer_client.integrations.settings`):

- :mod:`~trainer_client.integrations.verl`: ``compute_score`` (async, per sample) and ``compute_score_batch``;
- :mod:`~trainer_client.integrations.openrlhf`: ``reward_func`` for ``--reward.remote_url /path/to/file.py``;
- :mod:`~trainer_client.integrations.slime`: ``custom_rm`` for ``--custom-rm-path`` (one sample or a group);
- :mod:`~trainer_client.integrations.areal`: ``reward_fn``;
- :mod:`~trainer_client.integrations.verifiers`: ``RemoteGroupReward``, a Rubric group function.

Nothing here imports a trainer: each module only follows its calling code (the commits are in each docstring).
"""
