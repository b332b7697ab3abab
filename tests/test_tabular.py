"""Tabular RL: planners against AIMA's published numbers, simulation against exact absorption,
learners against planners, and the grid-world map parser.

Expected numbers come from Russell & Norvig, AIMA 3rd ed. (Fig. 17.2, 17.3 and the text of
§17.1) or from hand derivations written next to them; never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from rlhfkit.tabular.gridworld import ACTIONS, MapError, build_gridworld, parse_map
from rlhfkit.tabular.learning import q_learning, reinforce
from rlhfkit.tabular.planning import (
    PlanningError,
    absorption_probabilities,
    evaluate_policy_exact,
    evaluate_policy_iterative,
    exit_seeking_policy,
    policy_iteration,
    value_iteration,
)
from rlhfkit.tabular.simulate import simulate_policy
from rlhfkit.tabular.worlds import AIMA_4X3, LANDER, WORLDS

UP, RIGHT, DOWN, LEFT = (ACTIONS.index(a) for a in ("up", "right", "down", "left"))
ARROW = {"↑": UP, "→": RIGHT, "↓": DOWN, "←": LEFT}
PLANNERS = {
    "value-iteration": lambda mdp: value_iteration(mdp),
    "policy-iteration": lambda mdp: policy_iteration(mdp, evaluation="exact"),
    "policy-iteration-iterative": lambda mdp: policy_iteration(mdp, evaluation="iterative"),
}


def aima(step_reward: float = -0.04, gamma: float = 1.0, noise: float = 0.2):
    return build_gridworld(parse_map(AIMA_4X3, "aima4x3"), step_reward=step_reward, noise=noise, gamma=gamma)


def arrows(world, policy) -> dict[tuple[int, int], int]:
    return {cell: int(policy[i]) for i, cell in enumerate(world.cells) if not world.mdp.terminal[i]}


# --- the model -------------------------------------------------------------------------------


def test_transitions_follow_the_slip_model():
    # AIMA §17.1: intended direction 0.8, each perpendicular 0.1; bumping into a wall or the edge stays.
    world = aima()
    p = world.mdp.transitions

    def row(cell, action):
        return {world.cells[j]: round(float(q), 10) for j, q in enumerate(p[world.state(cell), action]) if q > 0}

    # (1,1) up: 0.8 to (1,2); slip left hits the edge (stay), slip right to (2,1).
    assert row((1, 1), UP) == {(1, 2): 0.8, (1, 1): 0.1, (2, 1): 0.1}
    # (1,2) right: the wall at (2,2) -> stay 0.8; slips to (1,3) and (1,1).
    assert row((1, 2), RIGHT) == {(1, 2): 0.8, (1, 3): 0.1, (1, 1): 0.1}
    # (3,2) right: into the -1 exit with 0.8.
    assert row((3, 2), RIGHT) == {(4, 2): 0.8, (3, 3): 0.1, (3, 1): 0.1}
    assert world.mdp.rewards[world.state((4, 3))] == 1.0 and world.mdp.rewards[world.state((4, 2))] == -1.0
    assert world.mdp.terminal.sum() == 2 and len(world.cells) == 11  # 12 cells minus the wall


def test_policy_evaluation_of_a_two_cell_corridor_by_hand():
    # Map "S +": from S, "right" reaches +1 with 0.8, slips up/down bump the edges (stay) with 0.2.
    # U(S) = R + 0.8 * 1 + 0.2 * U(S)  =>  U(S) = (-0.1 + 0.8) / 0.8 = 0.875.
    world = build_gridworld(parse_map("+: exit +1\nS +"), step_reward=-0.1)
    policy = np.array([RIGHT, -1])
    assert evaluate_policy_exact(world.mdp, policy)[0] == pytest.approx(0.875)
    assert evaluate_policy_iterative(world.mdp, policy, tolerance=1e-12)[0] == pytest.approx(0.875)


# --- planning on AIMA's 4x3 world --------------------------------------------------------------

# AIMA 3rd ed. Fig. 17.3: utilities with step reward -0.04, γ = 1.
FIG_17_3 = {
    (1, 1): 0.705, (2, 1): 0.655, (3, 1): 0.611, (4, 1): 0.388,
    (1, 2): 0.762, (3, 2): 0.660,
    (1, 3): 0.812, (2, 3): 0.868, (3, 3): 0.918,
}  # fmt: skip


@pytest.mark.parametrize("method", sorted(PLANNERS))
def test_utilities_match_aima_fig_17_3(method):
    world = aima(-0.04)
    result = PLANNERS[method](world.mdp)
    got = {cell: round(float(result.utilities[world.state(cell)]), 3) for cell in FIG_17_3}
    assert got == FIG_17_3
    assert result.utilities[world.state((4, 3))] == 1.0 and result.utilities[world.state((4, 2))] == -1.0


@pytest.mark.parametrize("world_name", sorted(WORLDS))
@pytest.mark.parametrize("step_reward", [-2.0, -0.5, -0.2, -0.04, -0.01])
def test_value_and_policy_iteration_agree(world_name, step_reward):
    world = build_gridworld(parse_map(WORLDS[world_name]), step_reward=step_reward)
    results = {name: plan(world.mdp) for name, plan in PLANNERS.items()}
    reference = results["policy-iteration"]
    for name, result in results.items():
        np.testing.assert_allclose(result.utilities, reference.utilities, atol=1e-7, err_msg=name)
        # Policies may break ties differently (e.g. lander (1,1) at -0.5: up and right are mirror
        # images around the crater), so compare what they are worth, not the arrows.
        worth = evaluate_policy_exact(world.mdp, result.policy)
        np.testing.assert_allclose(worth, reference.utilities, atol=1e-7, err_msg=name)


def grid_arrows(picture: str) -> dict[tuple[int, int], str]:
    """{(col, row): arrow} from a picture drawn top row first; '+', '-', '#' and '?' (either) are skipped."""
    rows = picture.split()
    lines = [rows[i : i + 4] for i in range(0, len(rows), 4)]  # 4 columns
    return {
        (col, len(lines) - r): symbol
        for r, line in enumerate(lines)
        for col, symbol in enumerate(line, start=1)
        if symbol in ARROW
    }


# AIMA Fig. 17.2(a), step reward -0.04: the long way round from (3,1), left (not up) at (4,1).
FIG_17_2A = """
    → → → +
    ↑ # ↑ -
    ↑ ← ← ←
"""

# AIMA Fig. 17.2(b), one representative step reward per range, with the arrows the text explains.
FIG_17_2B = {
    # R < -1.6284: "heads straight for the nearest exit, even if the exit is worth -1".
    # Counting moves: (1,1) is 4 from -1 and 5 from +1, (2,1) 3 vs 4, (4,1) and (3,2) are 1 from -1;
    # (1,2) is 4 from +1 and 5 from -1; the top row is next to or on the way to +1.
    # (3,1) is 2 moves from -1 either up or right, so either arrow is "nearest" (checked below).
    -2.0: """
    → → → +
    ↑ # → -
    → → ? ↑
    """,
    # -0.4278 < R < -0.0850: "takes the shortest route to the +1 state and is willing to risk falling
    # into -1 ... takes the shortcut from (3,1)". Shortest to +1: (2,1) via (3,1) is 4 moves (5 via
    # (1,1)); (4,1) goes left then up (up would enter -1); (1,1) is 5 moves either way, up is risk-free.
    -0.2: """
    → → → +
    ↑ # ↑ -
    ↑ → ↑ ←
    """,
    # -0.0221 < R < 0: "takes no risks at all. In (4,1) and (3,2), the agent heads directly away from
    # the -1 state so that it cannot fall in by accident" (down at (4,1), left at (3,2), into walls).
    -0.01: """
    → → → +
    ↑ # ← -
    ↑ ← ← ↓
    """,
    # -0.0850 < R < -0.0221 is panel (a).
    -0.04: FIG_17_2A,
}


@pytest.mark.parametrize("step_reward", sorted(FIG_17_2B))
def test_policy_ranges_match_aima_fig_17_2(step_reward):
    world = aima(step_reward)
    policy = arrows(world, policy_iteration(world.mdp).policy)
    expected = grid_arrows(FIG_17_2B[step_reward])
    assert len(expected) == (8 if step_reward == -2.0 else 9)
    for cell, arrow in expected.items():
        assert policy[cell] == ARROW[arrow], f"step reward {step_reward}, cell {cell}"
    if step_reward == -2.0:
        assert policy[(3, 1)] in (UP, RIGHT)


def test_slightly_dreary_life_never_risks_the_minus_one_exit():
    # -0.0221 < R < 0: "the optimal policy takes no risks at all": no state can end in -1.
    world = aima(-0.01)
    policy = policy_iteration(world.mdp).policy
    live = ~world.mdp.terminal
    assert np.all(absorption_probabilities(world.mdp, policy)[live, world.state((4, 2))] < 1e-12)


def test_enjoyable_life_avoids_both_exits():
    # R > 0: "life is positively enjoyable and the agent avoids both exits". γ = 1 would make
    # utilities infinite, so take γ = 0.9: staying forever is worth R / (1 - γ) = 0.5 / 0.1 = 5,
    # more than any exit (at most +1). Only one action at (3,3), (3,2) and (4,1) has no chance of
    # entering an exit: left, left (into the wall) and down (into the edge).
    world = aima(0.5, gamma=0.9)
    result = value_iteration(world.mdp)
    live = ~world.mdp.terminal
    np.testing.assert_allclose(result.utilities[live], 5.0, atol=1e-6)
    chosen = world.mdp.transitions[np.arange(len(world.cells)), np.maximum(result.policy, 0)]  # (S, S)
    assert np.all(chosen[np.ix_(live, world.mdp.terminal)] == 0.0)
    policy = arrows(world, result.policy)
    assert (policy[(3, 3)], policy[(3, 2)], policy[(4, 1)]) == (LEFT, LEFT, DOWN)


def test_positive_step_reward_with_gamma_one_is_refused():
    with pytest.raises(PlanningError, match="γ < 1"):
        value_iteration(aima(0.1).mdp, max_iterations=200)


# --- simulation ---------------------------------------------------------------------------------


def _absorption_by_linear_solve(mdp, policy, start):
    """B = (I - Q)^-1 R_abs for the chain of `policy` (independent of the library's version)."""
    p_pi = np.array([mdp.transitions[s, max(policy[s], 0)] for s in range(mdp.num_states)])
    live = np.flatnonzero(~mdp.terminal)
    done = np.flatnonzero(mdp.terminal)
    b = np.linalg.solve(np.eye(len(live)) - p_pi[np.ix_(live, live)], p_pi[np.ix_(live, done)])
    return dict(zip(done, b[list(live).index(start)]))


def test_gamblers_ruin_absorption_by_hand():
    # Map "- S . +" with noise 1 and every action "up": each move slips left or right with 1/2
    # (up/down would hit the edges). A fair random walk on 0..3 started at 1 reaches 3 first with
    # probability 1/3 (gambler's ruin), so +1 with 1/3 and -1 with 2/3.
    world = build_gridworld(parse_map("+: exit +1\n-: exit -1\n- S . +"), step_reward=-0.04, noise=1.0)
    policy = np.where(world.mdp.terminal, -1, UP)
    start = world.start_state
    b = absorption_probabilities(world.mdp, policy)[start]
    assert b[world.state((4, 1))] == pytest.approx(1 / 3) and b[world.state((1, 1))] == pytest.approx(2 / 3)
    n = 20_000
    result = simulate_policy(world.mdp, policy, start, n, np.random.default_rng(0))
    standard_error = np.sqrt((1 / 3) * (2 / 3) / n)
    assert abs(result.end_counts[world.state((4, 1))] / n - 1 / 3) < 4 * standard_error
    assert result.timeouts == 0


@pytest.mark.parametrize(
    "world_name,step_reward", [("aima4x3", -0.04), ("aima4x3", -0.2), ("lander", -0.1), ("lander", -0.2)]
)
def test_simulated_outcomes_match_exact_absorption(world_name, step_reward):
    world = build_gridworld(parse_map(WORLDS[world_name]), step_reward=step_reward)
    policy = policy_iteration(world.mdp).policy
    exact = _absorption_by_linear_solve(world.mdp, policy, world.start_state)
    library = absorption_probabilities(world.mdp, policy)[world.start_state]
    n = 20_000
    result = simulate_policy(world.mdp, policy, world.start_state, n, np.random.default_rng(1))
    assert result.episodes == n and result.timeouts == 0
    for exit_state, p in exact.items():
        assert library[exit_state] == pytest.approx(p, abs=1e-12)
        standard_error = max(np.sqrt(p * (1 - p) / n), 1 / n)
        assert abs(result.end_counts[exit_state] / n - p) < 4 * standard_error, world.cells[exit_state]


def test_simulated_mean_return_matches_start_utility():
    # With γ = 1 the expected sum of rewards along an episode is U^π(start) (definition of U).
    world = aima(-0.04)
    result = policy_iteration(world.mdp)
    sim = simulate_policy(world.mdp, result.policy, world.start_state, 20_000, np.random.default_rng(2))
    assert sim.mean_return == pytest.approx(result.utilities[world.start_state], abs=0.02)


def test_exit_seeking_policy_always_exits():
    # Policy iteration with γ = 1 needs a first policy that exits from everywhere.
    for text in WORLDS.values():
        world = build_gridworld(parse_map(text), step_reward=-0.04)
        policy = exit_seeking_policy(world.mdp)
        np.testing.assert_allclose(absorption_probabilities(world.mdp, policy).sum(axis=1), 1.0)


# --- learning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("learner,min_agree", [(q_learning, 8), (reinforce, 7)])
def test_learners_find_the_planned_policy_on_the_4x3_world(learner, min_agree):
    world = aima(-0.04)
    planned = policy_iteration(world.mdp)
    learned = learner(world.mdp, 10_000, np.random.default_rng(0))
    live = ~world.mdp.terminal
    assert (learned.policy == planned.policy)[live].sum() >= min_agree  # of 9
    # Where they differ it costs little: the learned policy is worth nearly as much from the start.
    value = evaluate_policy_exact(world.mdp, learned.policy)[world.start_state]
    assert value > planned.utilities[world.start_state] - 0.05


# --- the lander ---------------------------------------------------------------------------------


def test_lander_policy_changes_with_every_step_reward():
    # Design intent (worlds.py): five step rewards, five different policies; cheap living never
    # crashes, expensive living dives into the crater next to the start.
    grid = parse_map(LANDER, "lander")
    policies, crater_odds = [], []
    for step_reward in (-0.04, -0.05, -0.1, -0.2, -0.5):
        world = build_gridworld(grid, step_reward=step_reward)
        policy = policy_iteration(world.mdp).policy
        policies.append(tuple(policy))
        crater_odds.append(absorption_probabilities(world.mdp, policy)[world.start_state, world.state((2, 2))])
    assert len(set(policies)) == 5
    assert crater_odds[0] < 0.01 and crater_odds[-1] > 0.9
    assert all(a <= b + 1e-9 for a, b in zip(crater_odds, crater_odds[1:]))


# --- map parsing --------------------------------------------------------------------------------


def test_parse_map_coordinates_and_legend():
    grid = parse_map(AIMA_4X3)
    assert (grid.width, grid.height, grid.start) == (4, 3, (1, 1))
    assert grid.symbol((2, 2)) == "#" and grid.symbol((4, 3)) == "+" and grid.symbol((4, 2)) == "-"
    lander = parse_map(LANDER)
    assert lander.start == (1, 3) and lander.symbol((8, 3)) == "G" and lander.symbol((2, 2)) == "C"
    assert lander.legend["~"].kind == "hazard" and lander.legend["~"].name == "sandstorm"
    # A hazard cell's reward is the step reward plus its penalty.
    world = build_gridworld(lander, step_reward=-0.1)
    assert world.mdp.rewards[world.state((4, 3))] == pytest.approx(-0.18)


@pytest.mark.parametrize(
    "text,line,column,words",
    [
        ("G: exit +1\n. . G\n. x .\n", 3, 3, "unknown cell 'x'"),
        ("G: exit +1\n. . G\n. .\n", 3, 4, "row has 2 cells"),
        ("G: exit lots\n. G\n", 1, 9, "'lots' is not a number"),
        ("G: goal +1\n. G\n", 1, 4, "must read"),
        ("G: exit +1\nS G\nS .\n", 3, 1, "second start cell"),
        ("G: exit +1\n. G\n~: hazard -1\n", 3, 1, "before the grid"),
        ("#: exit +1\n. #\n", 1, 1, "built in"),
        (". . .\nS . .\n", None, None, "no exit cell"),
        ("; only a comment\n", None, None, "no grid rows"),
    ],
)
def test_map_errors_name_line_and_column(text, line, column, words):
    with pytest.raises(MapError) as info:
        parse_map(text, "my.map")
    assert (info.value.line, info.value.column) == (line, column)
    assert words in str(info.value) and str(info.value).startswith("my.map")


# --- architecture -------------------------------------------------------------------------------


def test_tabular_math_imports_only_numpy_and_the_standard_library():
    import ast
    import sys
    from pathlib import Path

    import rlhfkit.tabular

    root = Path(rlhfkit.tabular.__file__).parent
    offenders = []
    for name in ("mdp", "planning", "learning", "simulate", "gridworld", "worlds", "methods", "render"):
        for node in ast.walk(ast.parse((root / f"{name}.py").read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                top = module.split(".")[0]
                allowed = top in ("numpy", "matplotlib") or top in sys.stdlib_module_names
                if not (allowed or module.startswith("rlhfkit.tabular")):
                    offenders.append(f"{name}.py: {module}")
    assert not offenders, offenders
