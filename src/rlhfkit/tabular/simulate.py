"""Monte-Carlo rollouts of a fixed policy: where do episodes end, and what do they earn?

Episodes run side by side as numpy arrays (one entry per episode), so thousands take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhfkit.tabular.mdp import FiniteMDP, policy_transitions


@dataclass(frozen=True)
class SimulationResult:
    """Outcome of `simulate_policy`.

    Attributes:
        end_counts: (S,) how many episodes ended in each terminal state (0 elsewhere).
        timeouts: episodes still running after `max_steps` moves.
        mean_return: average sum of γ^t R(s_t) over each episode, the final state included.
        mean_steps: average number of moves per episode.
    """

    end_counts: np.ndarray
    timeouts: int
    mean_return: float
    mean_steps: float

    @property
    def episodes(self) -> int:
        return int(self.end_counts.sum()) + self.timeouts


def sample_next_states(p_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of a batch of categorical distributions.

    p_rows: (B, S) rows summing to 1. Returns (B,) int.
    """
    cumulative = p_rows.cumsum(axis=1)  # (B, S)
    u = rng.random((p_rows.shape[0], 1)) * cumulative[:, -1:]  # scaled so rounding never overshoots
    return (cumulative <= u).sum(axis=1)


def simulate_policy(
    mdp: FiniteMDP,
    policy: np.ndarray,
    start: int,
    episodes: int,
    rng: np.random.Generator,
    max_steps: int = 1_000,
) -> SimulationResult:
    """Run `episodes` episodes of `policy` from state `start` and count where they end.

    policy: (S,) action per state. An episode ends on entering a terminal state or after
    `max_steps` moves (a timeout).
    """
    p_pi = policy_transitions(mdp, policy)  # (S, S)
    states = np.full(episodes, start)  # (E,)
    running = ~mdp.terminal[states]  # (E,)
    returns = np.where(running, 0.0, mdp.rewards[states])  # (E,)
    steps = np.zeros(episodes, dtype=int)
    for t in range(max_steps):
        if not running.any():
            break
        active = np.flatnonzero(running)
        returns[active] += mdp.gamma**t * mdp.rewards[states[active]]
        states[active] = sample_next_states(p_pi[states[active]], rng)
        steps[active] += 1
        ended = active[mdp.terminal[states[active]]]
        returns[ended] += mdp.gamma ** (t + 1) * mdp.rewards[states[ended]]
        running[ended] = False
    end_counts = np.bincount(states[~running], minlength=mdp.num_states)
    return SimulationResult(
        end_counts=end_counts,
        timeouts=int(running.sum()),
        mean_return=float(returns.mean()),
        mean_steps=float(steps.mean()),
    )
