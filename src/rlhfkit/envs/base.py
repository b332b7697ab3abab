"""What an environment is: one episode of a multi-turn interaction with the policy.

    messages = env.reset(row)                     # the opening messages (system/user)
    new, reward, done = env.step(assistant_text)  # the user's or a tool's reply, this turn's reward

A fresh instance plays each episode (the class is called with no arguments), so state lives on
`self`. The trainer enforces the turn limit and the token budget: an episode it cuts off keeps
the rewards it has had. `rows(split)` gives the task rows (each a dict with at least "prompt")
that `reset` receives; an environment without it needs a prompt file (--prompts)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StepResult:
    """What one `step` returns (it also unpacks as the triple (messages, reward, done))."""

    messages: list[dict]
    """new messages, each {"role": "user" | "tool", "content": str}; empty when done"""
    reward: float = 0.0
    """this turn's reward (per-turn costs, or the final score on the last turn)"""
    done: bool = False
    """the episode is over"""
    info: dict = field(default_factory=dict)
    """what the transcript records about the turn, e.g. {"tool_calls": [{"expression": ..., "result": ...}]}"""

    def __iter__(self):
        return iter((self.messages, self.reward, self.done))


class Environment:
    """Base class of the built-in environments (user classes need only `reset` and `step`)."""

    name = "environment"
    description = ""
    max_turns = 4
    """policy turns per episode"""
    max_tokens = 192
    """episode token budget: policy + environment tokens after the opening prompt"""

    def rows(self, split: str = "train") -> list[dict]:
        raise NotImplementedError(f"environment {self.name!r} has no rows of its own: give --prompts")

    def reset(self, row: dict) -> list[dict]:
        raise NotImplementedError

    def step(self, assistant_text: str) -> StepResult:
        raise NotImplementedError


def as_step_result(value) -> StepResult:
    """A user env's step may return a StepResult or a plain (messages, reward, done) tuple."""
    if isinstance(value, StepResult):
        return value
    messages, reward, done = value
    return StepResult(list(messages), float(reward), bool(done))
