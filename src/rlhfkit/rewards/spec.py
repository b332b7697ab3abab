"""Parse a reward specification from the command line into one reward function.

    gold                      the task's gold scorer
    vader                     VADER compound sentiment
    length                    response length in words / 100 (a test signal, or a penalty with a negative weight)
    PATH                      a reward model saved by rlhfkit (a folder)
    A=w1,B=w2                 a weighted sum, e.g. "runs/rm/reward_model=1.0,vader=0.5"
"""

from __future__ import annotations

from pathlib import Path

from rlhfkit.config import ConfigError
from rlhfkit.rewards.functions import WeightedSum, reward_model_scorer, vader_compound


def _length(prompts, completions, **_):
    return [len(c.split()) / 100.0 for c in completions]


def build_reward(spec: str, task=None, device="cpu"):
    """Returns (reward function, {name: weight})."""
    functions, weights = {}, {}
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, _, weight = part.partition("=")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"reward '{part}': weight '{weight}' is not a number") from None
        if name == "gold":
            if task is None:
                raise ConfigError("reward 'gold' needs a task (--task) whose gold scorer to use")
            fn = task.gold
        elif name == "vader":
            fn = vader_compound
        elif name == "length":
            fn = _length
        elif Path(name).is_dir():
            from rlhfkit.models.heads import load_reward_model

            fn = reward_model_scorer(load_reward_model(name, device=device))
        else:
            raise ConfigError(f"reward '{name}': expected gold, vader, length or a saved reward-model folder")
        functions[name], weights[name] = fn, w
    if not functions:
        raise ConfigError("--reward is empty")
    return WeightedSum(functions, weights), weights
