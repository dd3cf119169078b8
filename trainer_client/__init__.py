"""Client side of the reward service: RewardClient, the TRL adapter, grpo-train and reward-score."""
