"""Reward functions share one signature: `fn(prompts, completions, **columns) -> list[float]`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, Sequence

from rlhfkit.rewards.python import checked_scores


class RewardFunction(Protocol):
    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns) -> list[float]: ...


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(prompts: Sequence[str], completions: Sequence[str], **columns) -> list[float]:
    """VADER compound sentiment of each completion, in [−1, 1] (Hutto & Gilbert 2014).
    The prompt is ignored: only what the policy wrote is scored."""
    analyzer = _vader()
    return [float(analyzer.polarity_scores(c)["compound"]) for c in completions]


def reward_model_scorer(reward_model, batch_size: int = 64):
    """Wrap a `RewardModel` as a reward function (no gradients, batched)."""

    def score(prompts: Sequence[str], completions: Sequence[str], **columns) -> list[float]:
        return reward_model.score(list(prompts), list(completions), batch_size=batch_size).tolist()

    return score


@dataclass
class WeightedSum:
    """Σ_i w_i · f_i(prompts, completions): a multi-objective reward. `last_components` keeps
    each component's mean of the latest call for logging."""

    functions: dict[str, RewardFunction]
    weights: dict[str, float]

    def __post_init__(self):
        missing = set(self.functions) ^ set(self.weights)
        if missing:
            raise ValueError(f"reward components and weights must name the same things; mismatch: {sorted(missing)}")
        self.last_components: dict[str, float] = {}

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns) -> list[float]:
        total = [0.0] * len(completions)
        for name, fn in self.functions.items():
            values = fn(prompts, completions, **columns)
            values = checked_scores(name, values, prompts, len(completions))
            self.last_components[name] = sum(values) / max(len(values), 1)
            total = [t + self.weights[name] * v for t, v in zip(total, values)]
        return total
