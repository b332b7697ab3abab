"""The sentiment task (GRUE's IMDB task in miniature): continue the opening of a movie review;
gold = VADER compound positivity of the continuation (Hutto & Gilbert 2014).

The openings are written by the project (subject × plot × opening phrase), neutral on purpose,
so that the sentiment comes from what the policy writes."""

from __future__ import annotations

from rlhfkit.rewards.functions import vader_compound
from rlhfkit.tasks.base import Task

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


SENTIMENT = Task(
    name="sentiment",
    description="continue a movie-review opening; gold = VADER compound positivity of the continuation",
    make_rows=lambda: [{"prompt": p} for p in sentiment_prompts()],
    scorer=vader_compound,
    chat=False,
    max_new_tokens=24,
    metrics=("diversity", "perplexity"),
    source="1,440 openings written by the project (15 subjects × 12 plots × 8 phrases); VADER (MIT licence)",
)
