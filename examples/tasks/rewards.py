"""Example Python reward functions, TRL's convention: fn(prompts, completions, **columns) -> list[float].

    rlhfkit rl --task examples/tasks/capitals.yaml ...            (names_capital, through the task file)
    rlhfkit rl --task sentiment --reward "gold=1,examples/tasks/rewards.py:exclaims=0.3"
"""


def names_capital(prompts, completions, capital):
    """1.0 when the completion names the row's capital (the 'capital' column, passed by name)."""
    return [1.0 if city.lower() in text.lower() else 0.0 for text, city in zip(completions, capital)]


def exclaims(prompts, completions, **columns):
    """The number of exclamation marks, capped at 3, over 3: a style reward to mix with others."""
    return [min(text.count("!"), 3) / 3 for text in completions]
