"""Options of `rlhfkit gridworld solve` and `sweep`, as dataclasses (field docstrings are the --help).

Must stay light (no numpy): `rlhfkit --help` builds the parser from these classes.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from rlhfkit.config import ConfigError, SeedOptions

WorldName = Literal["aima4x3", "lander"]
MethodName = Literal["value-iteration", "policy-iteration", "policy-iteration-iterative", "q-learning", "reinforce"]


@dataclasses.dataclass
class GridworldConfig(SeedOptions):
    """Options shared by `gridworld solve` and `gridworld sweep`."""

    help_terms: ClassVar[dict[str, str]] = {"seeded": "learning and simulation"}
    limits: ClassVar[dict[str, str]] = {"gamma": "(0, 1]", "noise": "[0, 1]", "tolerance": "> 0", "train_episodes": ">= 0",
                                        "episodes": ">= 0", "max_steps": ">= 1"}

    world: WorldName = "aima4x3"
    """built-in world: aima4x3 (Russell & Norvig's 4x3) or lander (Mars lander, 8x6)"""
    map: str | None = None
    """a text map file to use instead of --world (format: `rlhfkit gridworld --help`)"""
    method: MethodName = "value-iteration"
    """how to find the policy: a planner (value-iteration, policy-iteration[-iterative]) or a learner"""
    gamma: float = 1.0
    """discount factor γ in (0, 1]"""
    noise: float = 0.2
    """probability of slipping sideways (half each way); 0.2 gives AIMA's 0.8 / 0.1 / 0.1"""
    tolerance: float = 1e-10
    """planners stop when no utility moves by more than this"""
    train_episodes: int = 20_000
    """training episodes for q-learning and reinforce"""
    episodes: int = 0
    """simulated episodes from the start cell S (0: no simulation)"""
    max_steps: int = 1_000
    """a simulated episode still running after this many moves counts as a timeout"""

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"--gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"--noise must be in [0, 1], got {self.noise}")
        if self.tolerance <= 0:
            raise ConfigError(f"--tolerance must be positive, got {self.tolerance}")
        for name in ("train_episodes", "episodes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {self.max_steps}")

    def check_step_reward(self, step_reward: float) -> None:
        """With γ = 1 a positive step reward has no finite utilities; say so before planning."""
        if self.gamma == 1.0 and step_reward > 0:
            raise ConfigError(
                f"step reward {step_reward:g} > 0 with γ = 1: staying forever is worth infinitely much, so "
                "utilities are infinite; pass --gamma below 1 (e.g. 0.9)"
            )


@dataclasses.dataclass
class SolveConfig(GridworldConfig):
    """`rlhfkit gridworld solve`."""

    step_reward: float = -0.04
    """reward of every non-exit cell (hazard cells add their penalty)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_step_reward(self.step_reward)


@dataclasses.dataclass
class SweepConfig(GridworldConfig):
    """`rlhfkit gridworld sweep`."""

    step_rewards: list[float] = dataclasses.field(default_factory=lambda: [-0.04, -0.05, -0.1, -0.2, -0.5])
    """comma-separated step rewards to compare, e.g. -0.04,-0.05,-0.1,-0.2,-0.5"""
    episodes: int = 1_000
    """simulated episodes from the start cell S per step reward (0: no simulation)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.step_rewards:
            raise ConfigError("--step-rewards needs at least one value, e.g. -0.04,-0.1")
        for step_reward in self.step_rewards:
            self.check_step_reward(step_reward)
