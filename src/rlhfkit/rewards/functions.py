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


StepRewards = list[list[tuple[int, float]]]
"""Per completion, (end of a step in the completion's characters, the step's reward) in order."""


@dataclass
class ProcessRewardScorer:
    """A process reward model as a reward: the completion cut into steps at the PRM's separator,
    each step's reward log σ(z) = log P(step correct) at its last token; the sequence reward is
    their sum, the log of Lightman et al.'s product of step probabilities. `step_rewards` gives
    the steps themselves, for dense rewards (`rl --reward-granularity token`)."""

    model: object  # a models.process_reward.ProcessRewardModel
    batch_size: int = 64

    def step_rewards(self, prompts: Sequence[str], completions: Sequence[str]) -> StepRewards:
        # torch-backed, imported when a PRM scores (this module stays light for the CLI)
        from rlhfkit.algorithms.process_reward import split_steps, step_rewards_from_logits

        ends = [[end for _, end in split_steps(c, self.model.separator)] for c in completions]
        out: StepRewards = []
        for i in range(0, len(completions), self.batch_size):
            chunk = slice(i, i + self.batch_size)
            with no_grad_eval(self.model):
                logits = self.model.step_logits_batch(list(prompts[chunk]), list(completions[chunk]), ends[chunk])
            flat, start = step_rewards_from_logits(logits.float()).tolist(), 0  # (S,) the chunk's steps in order
            for row in ends[chunk]:
                rewards, start = flat[start: start + len(row)], start + len(row)
                out.append([(e, r) for e, r in zip(row, rewards) if r == r])  # NaN: a step past max_length
        return out

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns) -> list[float]:
        return [sum(r for _, r in row) for row in self.step_rewards(prompts, completions)]


class no_grad_eval:
    """torch.no_grad() with the module in eval mode, restored after."""

    def __init__(self, module):
        import torch

        self.module, self.grad = module, torch.no_grad()

    def __enter__(self):
        self.was_training = self.module.training
        self.module.eval()
        self.grad.__enter__()

    def __exit__(self, *exc):
        self.grad.__exit__(*exc)
        self.module.train(self.was_training)


def reward_scorer(reward_model):
    """The reward function of a loaded reward model: a `ProcessRewardScorer` for a PRM."""
    if hasattr(reward_model, "step_logits_batch"):
        return ProcessRewardScorer(reward_model)
    return reward_model_scorer(reward_model)


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

    @property
    def has_steps(self) -> bool:
        """True when a component rewards steps (a process reward model)."""
        return any(hasattr(fn, "step_rewards") for fn in self.functions.values())

    def step_rewards(self, prompts: Sequence[str], completions: Sequence[str], **columns) -> StepRewards:
        """Σ_i w_i·(component i's step rewards): a component that scores the whole completion is one
        step ending at its last character. Logs the components' means as __call__ does."""
        rows: StepRewards = [[] for _ in completions]
        for name, fn in self.functions.items():
            if hasattr(fn, "step_rewards"):
                steps = fn.step_rewards(prompts, completions)
            else:
                values = checked_scores(name, fn(prompts, completions, **columns), prompts, len(completions))
                steps = [[(len(c), v)] for c, v in zip(completions, values)]
            self.last_components[name] = sum(r for row in steps for _, r in row) / max(len(completions), 1)
            for row, own in zip(rows, steps):
                row += [(end, self.weights[name] * r) for end, r in own]
        return rows
