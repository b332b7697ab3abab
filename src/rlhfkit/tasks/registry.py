"""Task registry. A task is prompts (made by the project, no download), a gold scorer and the
generation defaults that suit it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from rlhfkit.config import ConfigError
from rlhfkit.rewards.functions import vader_compound


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    make_prompts: Callable[[], list[str]]
    gold: Callable[..., list[float]]
    chat: bool = False
    max_new_tokens: int = 24
    eval_fraction: float = 0.2

    def prompts(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[str]:
        """`n` prompts of `split` ("train" or "test"; disjoint), shuffled by `seed`.
        Prompts repeat (cycling) only if `n` exceeds the split's size."""
        everything = self.make_prompts()
        order = list(range(len(everything)))
        random.Random(1234).shuffle(order)  # the split itself never depends on the run's seed
        cut = int(len(order) * (1 - self.eval_fraction))
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        pool = [everything[i] for i in (order[:cut] if split == "train" else order[cut:])]
        random.Random(seed).shuffle(pool)
        if n is None:
            return pool
        return [pool[i % len(pool)] for i in range(n)]


# The sentiment task (GRUE's IMDB task in miniature): continue the opening of a movie review.
# Openings are neutral on purpose, so the sentiment comes from what the policy writes.
_SUBJECTS = [
    "This movie", "The film", "The new thriller", "This documentary", "The sequel", "The director's latest film",
    "This animated feature", "The remake", "This period drama", "The comedy", "This indie film", "The war epic",
    "The musical", "This horror movie", "The adaptation",
]
_PLOTS = [
    "follows a small-town detective", "tells the story of two estranged sisters", "is about a band of travelling musicians",
    "centres on an aging boxer", "follows a young chef in Paris", "is set on a space station", "follows a family on a road trip",
    "is about a retired teacher", "tells the story of a lighthouse keeper", "follows a group of students",
    "is about a journalist chasing a story", "centres on a struggling farmer",
]
_OPENINGS = [
    "I have to say that", "Honestly, the acting was", "Overall, I thought it was", "The story was", "Watching it, I felt",
    "My final verdict:", "The soundtrack was", "In the end, the film is",
]


def sentiment_prompts() -> list[str]:
    return [f"{s} {p}. {o}" for s in _SUBJECTS for p in _PLOTS for o in _OPENINGS]


TASKS: dict[str, Task] = {
    "sentiment": Task(
        name="sentiment",
        description="continue a movie-review opening; gold = VADER compound positivity of the continuation",
        make_prompts=sentiment_prompts,
        gold=vader_compound,
        chat=False,
        max_new_tokens=24,
    ),
}


def task_gold_scorer(name: str):
    """The gold scorer of built-in task `name` — the `task:NAME` reward of `rewards.spec`."""
    try:
        return get_task(name).gold
    except ValueError as err:
        raise ConfigError(str(err)) from None


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}' (built-in tasks: {', '.join(sorted(TASKS))})")
    return TASKS[name]
