"""Reward functions: `(prompts, completions, **columns) -> list[float]`.

Gold scorers (VADER), learned reward models wrapped as functions, and weighted sums of them.
May import models; never trainers or cli.
"""

from rlhfkit.rewards.functions import (
    RewardFunction,
    WeightedSum,
    reward_model_scorer,
    vader_compound,
)

__all__ = ["RewardFunction", "WeightedSum", "reward_model_scorer", "vader_compound"]
