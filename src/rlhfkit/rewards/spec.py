"""Parse a reward specification from the command line into one reward function.

    gold                      the task's gold scorer
    vader                     VADER compound sentiment
    length                    response length in words / 100 (a test signal, or a penalty with a negative weight)
    PATH                      a reward model saved by rlhfkit (a folder); a process reward model
                              (`rm --kind stepwise`) scores each step, summed, or dense per step
    judge / judge:MODEL       direct RLAIF: an LM judge's expected 1–10 rating rescaled to [−1, 1]
                              (MODEL: a local model or an OpenAI-compatible URL; needs a factory
                              passed in `named`, since judges live in the feedback room above this one)
    MODULE:FUNCTION           a Python function `fn(prompts, completions, **columns) -> list[float]`
    path/to/file.py:FUNCTION  (TRL's convention; see rewards/python.py), e.g. "my_rewards:exact_match"
    A=w1,B=w2                 a weighted sum, e.g. "runs/rm/reward_model=1.0,vader=0.5,my_rewards:brevity=0.2"
"""

from __future__ import annotations

from pathlib import Path

from rlhfkit.config import ConfigError
from rlhfkit.models.heads import load_reward_model
from rlhfkit.rewards.functions import WeightedSum, reward_scorer, vader_compound
from rlhfkit.rewards.python import PromptColumns, is_python_spec, load_python_reward


def _length(prompts, completions, **_):
    return [len(c.split()) / 100.0 for c in completions]


def build_reward(spec: str, task=None, device="cpu", named: dict | None = None, columns: PromptColumns | None = None):
    """Returns (reward function, {name: weight}). `named` maps extra prefixes (e.g. "judge") to
    factories `f(argument) -> reward function`, where the argument is the text after "prefix:".
    `columns`: the prompts' extra columns, handed to Python reward functions by name (default:
    the task's own columns, e.g. a reference or an answer)."""
    functions, weights = {}, {}
    named = named or {}
    if columns is None and task is not None:
        columns = getattr(task, "columns", None)
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, _, weight = part.rpartition("=") if "=" in part else (part, "", "")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"reward '{part}': weight '{weight}' is not a number") from None
        prefix, _, argument = name.partition(":")
        if prefix in named:
            fn = named[prefix](argument)
        elif name == "gold":
            if task is None:
                raise ConfigError("reward 'gold' needs a task (--task) whose gold scorer to use")
            fn = task.gold
        elif name == "vader":
            fn = vader_compound
        elif name == "length":
            fn = _length
        elif Path(name).is_dir():
            fn = reward_scorer(load_reward_model(name, device=device))  # a PRM folder: its step rewards
        elif is_python_spec(name):
            fn = load_python_reward(name, columns)
        else:
            known = ", ".join(["gold", "vader", "length", *named])
            raise ConfigError(f"reward '{name}': expected {known} or a saved reward-model folder, "
                              "or a Python function (module:function or path/to/file.py:function)")
        functions[name], weights[name] = fn, w
    if not functions:
        raise ConfigError("--reward is empty")
    return WeightedSum(functions, weights), weights
