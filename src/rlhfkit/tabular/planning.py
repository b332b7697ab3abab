"""Planning with a known model: value iteration, policy iteration, greedy policies.

All functions are pure: they take a `FiniteMDP` (and a policy or utilities) and return arrays.
A policy is an (S,) int array of action indices, -1 at terminal states.
Source: Russell & Norvig, AIMA 3rd ed., §17.2 (value iteration) and §17.3 (policy iteration).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhfkit.tabular.mdp import FiniteMDP, backup, policy_transitions

NO_ACTION = -1
"""The policy entry of a terminal state."""


class PlanningError(ValueError):
    """Planning has no finite answer (or did not converge); the message says why and what to change."""


@dataclass(frozen=True)
class PlanningResult:
    """What a planner returns.

    Attributes:
        utilities: (S,) U(s) of the returned policy (for value iteration: of the optimal one).
        policy: (S,) greedy action index per state, -1 at terminals.
        iterations: value-iteration sweeps, or policy-iteration improvement steps.
    """

    utilities: np.ndarray
    policy: np.ndarray
    iterations: int


def greedy_policy(
    mdp: FiniteMDP, utilities: np.ndarray, current: np.ndarray | None = None, tie_tolerance: float = 1e-9
) -> np.ndarray:
    """π(s) = argmax_a Q(s, a) for Q = backup(U); -1 at terminals.

    Ties (within `tie_tolerance`) go to the `current` policy's action when given — that is what
    makes policy iteration stop — and otherwise to the lowest action index.

    utilities: (S,); current: (S,) or None. Returns (S,) int.
    """
    q = backup(mdp, utilities)  # (S, A)
    best = q.max(axis=1, keepdims=True)  # (S, 1)
    is_best = q >= best - tie_tolerance  # (S, A)
    policy = is_best.argmax(axis=1)  # first best action
    if current is not None:
        keep = is_best[np.arange(mdp.num_states), np.maximum(current, 0)] & (current >= 0)
        policy = np.where(keep, current, policy)
    return np.where(mdp.terminal, NO_ACTION, policy)


def value_iteration(mdp: FiniteMDP, tolerance: float = 1e-10, max_iterations: int = 100_000) -> PlanningResult:
    """Repeat the Bellman update U ← max_a Q(·, a) until no utility moves by more than `tolerance`.

    Starts from U = 0 at non-terminal states (AIMA Fig. 17.4). With γ = 1 it converges when every
    policy worth following reaches an exit; otherwise (e.g. a positive step reward) utilities grow
    without bound and a `PlanningError` says so.
    """
    utilities = np.where(mdp.terminal, mdp.rewards, 0.0)  # (S,)
    for iteration in range(1, max_iterations + 1):
        updated = backup(mdp, utilities).max(axis=1)  # (S,)
        change = np.abs(updated - utilities).max()
        utilities = updated
        if change < tolerance:
            return PlanningResult(utilities, greedy_policy(mdp, utilities), iteration)
    raise PlanningError(
        f"value iteration did not converge in {max_iterations} sweeps (last change {change:.3g}); "
        f"with γ = {mdp.gamma:g} a non-negative step reward can make utilities infinite — use γ < 1"
    )


def evaluate_policy_exact(mdp: FiniteMDP, policy: np.ndarray) -> np.ndarray:
    """U^π by solving the linear system (I − γ P_π) U = R over the non-terminal states.

    Terminal utilities are their rewards and enter the right-hand side:
        (I − γ P_nn) U_n = R_n + γ P_nt R_t.
    policy: (S,). Returns (S,).
    """
    p_pi = policy_transitions(mdp, policy)  # (S, S)
    live, done = ~mdp.terminal, mdp.terminal
    p_nn = p_pi[np.ix_(live, live)]  # (N, N)
    rhs = mdp.rewards[live] + mdp.gamma * p_pi[np.ix_(live, done)] @ mdp.rewards[done]  # (N,)
    system = np.eye(p_nn.shape[0]) - mdp.gamma * p_nn
    # A policy that never reaches an exit from some state makes the system singular when γ = 1.
    if np.linalg.cond(system) > 1e12:
        raise PlanningError(
            f"the policy never reaches an exit from some states, so with γ = {mdp.gamma:g} its "
            "utilities are infinite; use γ < 1"
        )
    utilities = mdp.rewards.astype(float).copy()
    utilities[live] = np.linalg.solve(system, rhs)
    return utilities


def evaluate_policy_iterative(
    mdp: FiniteMDP,
    policy: np.ndarray,
    initial: np.ndarray | None = None,
    tolerance: float = 1e-10,
    max_sweeps: int = 100_000,
) -> np.ndarray:
    """U^π by repeating U ← R + γ P_π U (terminals fixed at R) until it moves less than `tolerance`.

    policy: (S,); initial: (S,) starting utilities (warm start from the previous policy). Returns (S,).
    """
    p_pi = policy_transitions(mdp, policy)  # (S, S)
    utilities = np.where(mdp.terminal, mdp.rewards, 0.0) if initial is None else initial.astype(float).copy()
    for _ in range(max_sweeps):
        updated = np.where(mdp.terminal, mdp.rewards, mdp.rewards + mdp.gamma * p_pi @ utilities)
        change = np.abs(updated - utilities).max()
        utilities = updated
        if change < tolerance:
            return utilities
    raise PlanningError(
        f"iterative policy evaluation did not converge in {max_sweeps} sweeps; the policy may never "
        f"reach an exit, which with γ = {mdp.gamma:g} makes its utilities infinite — use γ < 1"
    )


def exit_seeking_policy(mdp: FiniteMDP) -> np.ndarray:
    """A policy that reaches an exit with probability 1 from every state that can reach one.

    Breadth-first search backwards from the terminals: a state at distance k picks an action with a
    positive chance of reaching distance k − 1. Policy iteration with γ = 1 must start from such a
    ("proper") policy, or its first evaluation has no finite answer.
    Returns (S,) int; states that cannot reach an exit get action 0.
    """
    policy = np.where(mdp.terminal, NO_ACTION, 0)
    reached = mdp.terminal.copy()
    frontier = reached.copy()
    while frontier.any():
        # can_step[s, a]: action a in s has a positive chance of landing in the frontier
        can_step = (mdp.transitions[:, :, frontier] > 0).any(axis=-1)  # (S, A)
        newly = can_step.any(axis=1) & ~reached
        policy[newly] = can_step[newly].argmax(axis=1)
        reached |= newly
        frontier = newly
    return policy


def policy_iteration(
    mdp: FiniteMDP,
    evaluation: str = "exact",
    initial_policy: np.ndarray | None = None,
    tolerance: float = 1e-10,
    max_iterations: int = 1_000,
) -> PlanningResult:
    """Alternate policy evaluation and greedy improvement until the policy stops changing (AIMA Fig. 17.7).

    evaluation: "exact" (linear solve) or "iterative" (repeated Bellman expectation sweeps, warm
    started from the previous utilities). The start policy defaults to `exit_seeking_policy`.
    """
    evaluators = {
        "exact": lambda policy, previous: evaluate_policy_exact(mdp, policy),
        "iterative": lambda policy, previous: evaluate_policy_iterative(mdp, policy, previous, tolerance),
    }
    if evaluation not in evaluators:
        raise ValueError(f"evaluation must be one of {sorted(evaluators)}, got {evaluation!r}")
    evaluate = evaluators[evaluation]
    policy = exit_seeking_policy(mdp) if initial_policy is None else initial_policy.copy()
    utilities = None
    for iteration in range(1, max_iterations + 1):
        utilities = evaluate(policy, utilities)
        improved = greedy_policy(mdp, utilities, current=policy)
        if np.array_equal(improved, policy):
            return PlanningResult(utilities, policy, iteration)
        policy = improved
    raise PlanningError(f"policy iteration did not settle in {max_iterations} improvement steps")


def absorption_probabilities(mdp: FiniteMDP, policy: np.ndarray) -> np.ndarray:
    """B[s, t] = probability that following `policy` from s ends in terminal t (no step limit).

    Absorbing Markov chain: with Q = P_π among non-terminals and R_abs = P_π from non-terminals to
    terminals, B_n = (I − Q)^{-1} R_abs (Kemeny & Snell, Finite Markov Chains, §3.3). A row sums to
    less than 1 when the policy can wander forever from that state.

    policy: (S,). Returns (S, S), non-zero only in terminal columns; a terminal's row is one-hot.
    """
    p_pi = policy_transitions(mdp, policy)  # (S, S)
    # States from which the chain can never reach a terminal are absorbed nowhere (probability 0);
    # leaving them out keeps I − Q invertible for the rest.
    can_exit = mdp.terminal.copy()
    while True:
        grown = can_exit | (p_pi[:, can_exit] > 0).any(axis=1)
        if np.array_equal(grown, can_exit):
            break
        can_exit = grown
    live, done = can_exit & ~mdp.terminal, mdp.terminal
    q = p_pi[np.ix_(live, live)]  # (N, N)
    r_abs = p_pi[np.ix_(live, done)]  # (N, T)
    absorbed = np.linalg.solve(np.eye(q.shape[0]) - q, r_abs)  # (N, T)
    result = np.zeros((mdp.num_states, mdp.num_states))
    result[np.ix_(live, done)] = absorbed
    result[done, done] = 1.0
    return result
