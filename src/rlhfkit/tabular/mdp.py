"""The finite MDP type shared by the planners, the simulator and the learners.

Convention (Russell & Norvig, AIMA 3rd ed., ch. 17): the reward R(s) belongs to the state and is
collected every time the agent is in s, terminal states included. A terminal state ends the
episode, so its utility is just its reward. Utilities then satisfy the Bellman equation

    U(s) = R(s) + γ max_a Σ_s' P(s' | s, a) U(s')      for non-terminal s,
    U(s) = R(s)                                         for terminal s.

Shape letters: S states, A actions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FiniteMDP:
    """A finite Markov decision process with state rewards R(s) (AIMA convention).

    Attributes:
        state_names: (S,) a printable name per state, e.g. "(1,1)" for a grid cell.
        action_names: (A,) a printable name per action, e.g. "up".
        transitions: (S, A, S) P[s, a, s'] = probability of moving to s' after doing a in s.
            Rows of terminal states are ignored (they are kept as self-loops by convention).
        rewards: (S,) R(s), the reward for being in s (for a terminal: the exit reward).
        terminal: (S,) bool, True where the episode ends on arrival.
        gamma: discount factor γ in (0, 1].
    """

    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    transitions: np.ndarray
    rewards: np.ndarray
    terminal: np.ndarray
    gamma: float

    def __post_init__(self) -> None:
        S, A = len(self.state_names), len(self.action_names)
        if self.transitions.shape != (S, A, S):
            raise ValueError(f"transitions has shape {self.transitions.shape}, expected (S, A, S) = {(S, A, S)}")
        if self.rewards.shape != (S,) or self.terminal.shape != (S,):
            raise ValueError(f"rewards and terminal must have shape (S,) = ({S},)")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if np.any(self.transitions < 0):
            raise ValueError("transition probabilities must be non-negative")
        row_sums = self.transitions[~self.terminal].sum(axis=-1)  # (S_nonterminal, A)
        if not np.allclose(row_sums, 1.0):
            raise ValueError("P[s, a, :] must sum to 1 for every non-terminal state s and action a")

    @property
    def num_states(self) -> int:
        return len(self.state_names)

    @property
    def num_actions(self) -> int:
        return len(self.action_names)

    def state_index(self, name: str) -> int:
        """The index of the state called `name`."""
        return self.state_names.index(name)


def backup(mdp: FiniteMDP, utilities: np.ndarray) -> np.ndarray:
    """Q-values of acting once and then collecting `utilities`.

    Q(s, a) = R(s) + γ Σ_s' P(s' | s, a) U(s'); for a terminal s every action gives R(s).

    utilities: (S,). Returns (S, A).
    """
    q = mdp.rewards[:, None] + mdp.gamma * (mdp.transitions @ utilities)  # (S, A)
    q[mdp.terminal] = mdp.rewards[mdp.terminal, None]
    return q


def policy_transitions(mdp: FiniteMDP, policy: np.ndarray) -> np.ndarray:
    """The Markov chain of a deterministic policy: P_π[s, s'] = P[s, π(s), s'].

    policy: (S,) action index per state (ignored at terminals). Returns (S, S).
    """
    actions = np.where(mdp.terminal, 0, policy)
    return mdp.transitions[np.arange(mdp.num_states), actions]  # (S, S)
