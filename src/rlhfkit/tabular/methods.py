"""One entry per solution method, chosen once by name: `METHODS[name](mdp, **settings)`.

Settings (keyword-only, every method takes all three and uses what it needs): `tolerance` for
the planners, `train_episodes` and `seed` for the learners.

Planners read the model; learners only sample it. All return a `Solution` so that callers
(the CLI, a notebook) can compare them on equal terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rlhfkit.tabular.learning import q_learning, reinforce
from rlhfkit.tabular.mdp import FiniteMDP
from rlhfkit.tabular.planning import policy_iteration, value_iteration


@dataclass(frozen=True)
class Solution:
    """utilities (S,) and policy (S,) (-1 at terminals), plus a line saying how they were found."""

    utilities: np.ndarray
    policy: np.ndarray
    note: str
    learned: bool


def _value_iteration(mdp: FiniteMDP, *, tolerance: float, train_episodes: int, seed: int) -> Solution:
    result = value_iteration(mdp, tolerance=tolerance)
    return Solution(result.utilities, result.policy, f"{result.iterations} sweeps", learned=False)


def _policy_iteration(mdp: FiniteMDP, *, tolerance: float, train_episodes: int, seed: int) -> Solution:
    result = policy_iteration(mdp, evaluation="exact", tolerance=tolerance)
    return Solution(result.utilities, result.policy, f"{result.iterations} exact policy evaluations", learned=False)


def _policy_iteration_iterative(mdp: FiniteMDP, *, tolerance: float, train_episodes: int, seed: int) -> Solution:
    result = policy_iteration(mdp, evaluation="iterative", tolerance=tolerance)
    return Solution(result.utilities, result.policy, f"{result.iterations} iterative policy evaluations", learned=False)


def _q_learning(mdp: FiniteMDP, *, tolerance: float, train_episodes: int, seed: int) -> Solution:
    result = q_learning(mdp, train_episodes, np.random.default_rng(seed))
    return Solution(result.utilities, result.policy, f"{result.episodes} episodes, utilities = max_a Q", learned=True)


def _reinforce(mdp: FiniteMDP, *, tolerance: float, train_episodes: int, seed: int) -> Solution:
    result = reinforce(mdp, train_episodes, np.random.default_rng(seed))
    return Solution(result.utilities, result.policy, f"{result.episodes} episodes, utilities = baseline", learned=True)


METHODS: dict[str, Callable[..., Solution]] = {
    "value-iteration": _value_iteration,
    "policy-iteration": _policy_iteration,
    "policy-iteration-iterative": _policy_iteration_iterative,
    "q-learning": _q_learning,
    "reinforce": _reinforce,
}
