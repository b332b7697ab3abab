"""Model-free learning on a FiniteMDP: tabular Q-learning and REINFORCE.

The learners only *sample* the MDP (one transition at a time, like an agent would); they never
read P or R as tables. Their policies are meant to be compared with the planners' (planning.py),
which do read the model.

Rewards follow the AIMA convention of mdp.py: in state s the agent collects R(s); entering a
terminal t collects R(t) and ends the episode. Episodes start in a uniformly random non-terminal
state ("exploring starts") so that every state gets visited.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhfkit.tabular.mdp import FiniteMDP
from rlhfkit.tabular.planning import NO_ACTION


@dataclass(frozen=True)
class LearningResult:
    """What a learner returns.

    Attributes:
        policy: (S,) greedy action per state, -1 at terminals.
        utilities: (S,) the learner's value estimate (max_a Q for Q-learning, the baseline V for
            REINFORCE); terminals hold their reward.
        action_values: (S, A) Q-values (Q-learning) or policy logits θ (REINFORCE).
        episodes: episodes trained.
    """

    policy: np.ndarray
    utilities: np.ndarray
    action_values: np.ndarray
    episodes: int


class _Sampler:
    """Draws next states from P[s, a, ·] using pre-drawn uniforms (much faster than rng.choice per step)."""

    def __init__(self, mdp: FiniteMDP, rng: np.random.Generator, batch: int = 65_536):
        self.cumulative = mdp.transitions.cumsum(axis=-1)  # (S, A, S)
        self.rng, self.batch = rng, batch
        self._uniforms, self._next = rng.random(batch), 0

    def uniform(self) -> float:
        if self._next == self.batch:
            self._uniforms, self._next = self.rng.random(self.batch), 0
        self._next += 1
        return self._uniforms[self._next - 1]

    def step(self, state: int, action: int) -> int:
        row = self.cumulative[state, action]
        return int(np.searchsorted(row, self.uniform() * row[-1], side="right"))


def q_learning(
    mdp: FiniteMDP,
    episodes: int,
    rng: np.random.Generator,
    epsilon: float = 0.2,
    learning_rate_power: float = 0.6,
    max_steps: int = 200,
) -> LearningResult:
    """Tabular Q-learning (Watkins 1989; Sutton & Barto 2nd ed. §6.5) with ε-greedy exploration.

    Update after each move s --a--> s':
        Q(s, a) ← Q(s, a) + α (R(s) + γ max_a' Q(s', a') − Q(s, a)),
    where a terminal s' contributes its reward R(s') instead of max_a' Q(s', a').
    The step size α = 1 / n(s, a)^learning_rate_power decays with the visit count n(s, a), which
    satisfies the Robbins–Monro conditions for power in (0.5, 1].
    """
    S, A = mdp.num_states, mdp.num_actions
    q = np.zeros((S, A))
    visits = np.zeros((S, A))
    sampler = _Sampler(mdp, rng)
    starts = np.flatnonzero(~mdp.terminal)
    for _ in range(episodes):
        state = int(rng.choice(starts))
        for _ in range(max_steps):
            if sampler.uniform() < epsilon:
                action = int(sampler.uniform() * A)
            else:
                action = int(q[state].argmax())
            next_state = sampler.step(state, action)
            if mdp.terminal[next_state]:
                target = mdp.rewards[state] + mdp.gamma * mdp.rewards[next_state]
            else:
                target = mdp.rewards[state] + mdp.gamma * q[next_state].max()
            visits[state, action] += 1
            q[state, action] += (target - q[state, action]) / visits[state, action] ** learning_rate_power
            if mdp.terminal[next_state]:
                break
            state = next_state
    utilities = np.where(mdp.terminal, mdp.rewards, q.max(axis=1))
    policy = np.where(mdp.terminal, NO_ACTION, q.argmax(axis=1))
    return LearningResult(policy=policy, utilities=utilities, action_values=q, episodes=episodes)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis. logits: (..., A). Returns (..., A)."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def reinforce(
    mdp: FiniteMDP,
    episodes: int,
    rng: np.random.Generator,
    learning_rate: float = 0.1,
    baseline_rate: float = 0.05,
    max_steps: int = 200,
) -> LearningResult:
    """REINFORCE with a per-state baseline (Williams 1992; Sutton & Barto 2nd ed. §13.4).

    Policy π(a | s) = softmax(θ[s])_a. After each episode s_0, a_0, ..., with return-to-go
    G_t = Σ_{k≥t} γ^{k−t} R(s_k) (the terminal's reward included), for every step t:
        θ[s_t] ← θ[s_t] + α (G_t − b(s_t)) ∇_θ[s_t] log π(a_t | s_t),
        with ∇_θ[s] log π(a | s) = onehot(a) − π(· | s),
        b(s_t) ← b(s_t) + β (G_t − b(s_t)).
    The γ^t factor of the textbook update is dropped, as is usual with exploring starts: each
    state's own return is what its action is judged by.
    """
    S, A = mdp.num_states, mdp.num_actions
    theta = np.zeros((S, A))
    baseline = np.zeros(S)
    sampler = _Sampler(mdp, rng)
    starts = np.flatnonzero(~mdp.terminal)
    for _ in range(episodes):
        # generate
        state = int(rng.choice(starts))
        visited_states, actions, rewards = [], [], []
        for _ in range(max_steps):
            probs = softmax(theta[state])
            action = min(int(np.searchsorted(probs.cumsum(), sampler.uniform(), side="right")), A - 1)
            visited_states.append(state)
            actions.append(action)
            rewards.append(mdp.rewards[state])
            state = sampler.step(state, action)
            if mdp.terminal[state]:
                rewards.append(mdp.rewards[state])
                break
        # returns-to-go (the terminal reward, if reached, is the last entry of `rewards`)
        g = rewards[-1] if len(rewards) > len(actions) else 0.0
        returns = np.empty(len(actions))
        for t in range(len(actions) - 1, -1, -1):
            g = rewards[t] + mdp.gamma * g
            returns[t] = g
        # policy-gradient step, then baseline
        for s, a, g_t in zip(visited_states, actions, returns):
            advantage = g_t - baseline[s]
            grad_log_pi = -softmax(theta[s])  # (A,)
            grad_log_pi[a] += 1.0
            theta[s] += learning_rate * advantage * grad_log_pi
            baseline[s] += baseline_rate * (g_t - baseline[s])
    utilities = np.where(mdp.terminal, mdp.rewards, baseline)
    policy = np.where(mdp.terminal, NO_ACTION, theta.argmax(axis=1))
    return LearningResult(policy=policy, utilities=utilities, action_values=theta, episodes=episodes)
