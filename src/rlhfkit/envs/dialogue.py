"""`dialogue`: a scripted simulated user with a hidden goal. The user wants a shirt in one colour
and does not say which; the assistant may ask (the user answers with a hint) or propose colours
(the user says no to a wrong one). Reward 1 at the end when the assistant names the goal colour
within the turn limit, 0 otherwise."""

from __future__ import annotations

import re

from rlhfkit.envs.base import Environment, StepResult

# colour -> the hints the user gives when asked, in order
COLOURS = {
    "red": ["It's a warm colour.", "Like a ripe tomato."],
    "blue": ["It's a cool colour.", "Like a clear sky."],
    "green": ["It's a cool colour.", "Like fresh grass."],
    "yellow": ["It's a warm colour.", "Like a lemon."],
    "black": ["It's a dark colour.", "Like the night."],
    "white": ["It's a light colour.", "Like snow."],
    "orange": ["It's a warm colour.", "Like the fruit of the same name."],
    "purple": ["It's a cool colour.", "Like a plum."],
}
OPENINGS = [
    "Hi, I'm looking for a shirt in my favourite colour.",
    "Hello! I want to buy a shirt, but only in one particular colour.",
    "Can you help me find a shirt? I have a colour in mind.",
    "I need a new shirt in a specific colour.",
]
SYSTEM = "You are a shop assistant. Find out which colour of shirt the customer wants and offer it."


def named_colours(text: str) -> list[str]:
    words = set(re.findall(r"[a-z]+", text.lower()))
    return [c for c in COLOURS if c in words]


class DialogueEnv(Environment):
    name = "dialogue"
    description = "a scripted customer with a hidden colour; reward 1 for naming it within the turn limit"
    max_turns = 4
    max_tokens = 192

    def rows(self, split: str = "train") -> list[dict]:
        rows = [{"id": f"{c}#{k}", "prompt": opening, "goal": c} for c in COLOURS for k, opening in enumerate(OPENINGS)]
        # a fixed split: the last opening of every colour is held out
        return [r for r in rows if r["id"].endswith("#3") == (split == "test")]

    def reset(self, row: dict) -> list[dict]:
        self.goal, self.hints_given = row["goal"], 0
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["prompt"]}]

    def step(self, assistant_text: str) -> StepResult:
        named = named_colours(assistant_text)
        if self.goal in named and len(named) <= 2:  # naming every colour at once does not count
            return StepResult([], 1.0, True, {"reached": True})
        if named:
            reply = f"No, not {' or '.join(named)}."
        elif "?" in assistant_text:
            hints = COLOURS[self.goal]
            reply = hints[min(self.hints_given, len(hints) - 1)]
            self.hints_given += 1
        else:
            reply = "Which colours do you have?"
        return StepResult([{"role": "user", "content": reply}], 0.0, False, {"reached": False})
