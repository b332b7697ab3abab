"""`rlhfkit gridworld solve|sweep`: plan or learn a grid-world policy, simulate it, print or plot it.

Thin: parsing and printing only; the math lives in planning.py, learning.py and simulate.py.
Only argparse is imported at module level so that `rlhfkit --help` stays instant.
"""

from __future__ import annotations

import argparse
import re

from rlhfkit.config import ConfigError, add_config_arguments, config_from_args
from rlhfkit.tabular.config import SolveConfig, SweepConfig
from rlhfkit.tabular.gridworld import (
    ACTIONS,
    MapError,
    build_gridworld,
    cell_name,
    parse_map,
)
from rlhfkit.tabular.methods import METHODS
from rlhfkit.tabular.planning import PlanningError, absorption_probabilities
from rlhfkit.tabular.render import (
    Panel,
    exit_label,
    format_policy,
    format_utilities,
    plot_panels,
    policy_by_cell,
    utilities_by_cell,
)
from rlhfkit.tabular.simulate import simulate_policy
from rlhfkit.tabular.worlds import WORLDS

MAP_FORMAT = """\
map files (--map FILE): one cell per character, spaces between cells optional, top row first;
'.' open, '#' wall, 'S' start; other symbols are declared before the grid, one per line, as
'SYMBOL: exit REWARD [name]' (a terminal cell) or 'SYMBOL: hazard PENALTY [name]' (an open cell
whose reward is the step reward plus PENALTY); ';' starts a comment. Cells are named (col,row)
with (1,1) bottom-left. Example (AIMA's 4x3 world):

    +: exit +1
    -: exit -1
    . . . +
    . # . -
    S . . .
"""

# argparse takes "-0.04,-0.1" for an option name (it only knows plain negative numbers), so
# `--step-rewards -0.04,-0.1` would fail. As in Python 3.13, anything starting "-<digit>" is a value.
_NUMBERS = re.compile(r"^-\.?\d")


def register(subparsers) -> None:
    """Add `gridworld` (with `solve` and `sweep`) to the top-level `rlhfkit` subparsers."""

    gridworld = subparsers.add_parser(
        "gridworld",
        help="tabular MDPs: value/policy iteration, Q-learning and REINFORCE on grid worlds",
        description="Finite MDPs on grid worlds with slip noise (AIMA ch. 17): plan with value or policy "
        "iteration, learn with Q-learning or REINFORCE, simulate the policy from the start cell.",
        epilog=MAP_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = gridworld.add_subparsers(dest="gridworld_command", metavar="SUBCOMMAND")
    gridworld.set_defaults(func=lambda args: (gridworld.print_help(), 2)[1])

    solve = commands.add_parser(
        "solve",
        help="utilities and policy (as arrows) for one step reward",
        description="Solve one grid world and print its utilities and policy; with --episodes also "
        "simulate the policy from S. Learners (q-learning, reinforce) are compared with policy iteration.",
        epilog=MAP_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep = commands.add_parser(
        "sweep",
        help="how the policy and the simulated outcomes change with the step reward",
        description="Solve the world once per step reward; print each policy and where simulated "
        "episodes from S end (counts per exit and timeouts, next to the exact probabilities).",
        epilog=MAP_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for parser, config, handler in ((solve, SolveConfig, _cmd_solve), (sweep, SweepConfig, _cmd_sweep)):
        parser._negative_number_matcher = _NUMBERS
        parser.add_argument("--config", help="YAML file of options (command-line flags override it)")
        add_config_arguments(parser, config)
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument("--plot", metavar="FILE.png", help="also draw utilities and arrows as a heat map")
        parser.set_defaults(func=handler)


def _load_world(cfg, step_reward: float):
    """The GridWorld for --map or --world; user mistakes become ConfigError."""
    from pathlib import Path


    if cfg.map is not None:
        path = Path(cfg.map)
        if not path.is_file():
            raise ConfigError(f"map file {path} does not exist")
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        text, source = WORLDS[cfg.world], cfg.world
    try:
        grid = parse_map(text, source)
    except MapError as err:
        raise ConfigError(str(err)) from None
    return build_gridworld(grid, step_reward=step_reward, noise=cfg.noise, gamma=cfg.gamma)


def _solve(world, cfg):
    """Run the chosen method; planning failures become ConfigError."""

    try:
        return METHODS[cfg.method](
            world.mdp, tolerance=cfg.tolerance, train_episodes=cfg.train_episodes, seed=cfg.seed
        )
    except PlanningError as err:
        raise ConfigError(f"{world.map.name}: {err}") from None


def _outcomes(world, solution, cfg, rng) -> dict | None:
    """Simulate cfg.episodes episodes from S; counts and exact probabilities per exit, plus timeouts."""

    if cfg.episodes == 0:
        return None
    if world.start_state is None:
        raise ConfigError(
            f"{world.map.name}: the map has no start cell 'S' to simulate from; add one or pass --episodes 0"
        )
    result = simulate_policy(world.mdp, solution.policy, world.start_state, cfg.episodes, rng, cfg.max_steps)
    exact = absorption_probabilities(world.mdp, solution.policy)[world.start_state]  # (S,)
    exits = sorted(map(int, world.mdp.terminal.nonzero()[0]), key=lambda i: -world.mdp.rewards[i])  # best first
    return {
        "episodes": cfg.episodes,
        "counts": {exit_label(world, i): int(result.end_counts[i]) for i in exits} | {"timeout": result.timeouts},
        "exact": {exit_label(world, i): round(float(exact[i]), 6) for i in exits},
        "mean_return": round(result.mean_return, 6),
        "mean_steps": round(result.mean_steps, 3),
    }


def _format_outcomes(outcomes: dict) -> str:
    width = max(len(label) for label in outcomes["counts"])
    lines = [f"  {'ends in':<{width}}  {'simulated':>16}  {'exact':>7}"]
    for label, count in outcomes["counts"].items():
        share = f"{count:>6} ({100 * count / outcomes['episodes']:5.1f}%)"
        exact = f"{100 * outcomes['exact'][label]:6.1f}%" if label in outcomes["exact"] else ""
        lines.append(f"  {label:<{width}}  {share:>16}  {exact:>7}".rstrip())
    lines.append(f"  mean return {outcomes['mean_return']:.3f}, mean moves {outcomes['mean_steps']:.1f}")
    return "\n".join(lines)


def _header(world, cfg, step_reward: float | None = None) -> str:
    reward = "" if step_reward is None else f", step reward {step_reward:g}"
    return f"{world.map.name}{reward}, γ = {cfg.gamma:g}, noise {cfg.noise:g}, method {cfg.method}"


def _cmd_solve(args: argparse.Namespace) -> int:
    import json

    import numpy as np


    cfg = config_from_args(SolveConfig, args)
    world = _load_world(cfg, cfg.step_reward)
    solution = _solve(world, cfg)
    comparison = None
    if solution.learned:
        planned = METHODS["policy-iteration"](world.mdp, tolerance=cfg.tolerance, train_episodes=0, seed=0)
        live = ~world.mdp.terminal
        differ = [i for i in np.flatnonzero(live) if solution.policy[i] != planned.policy[i]]
        comparison = {
            "agree": int(live.sum()) - len(differ),
            "states": int(live.sum()),
            "differ": {
                cell_name(world.cells[i]): {
                    "learned": ACTIONS[solution.policy[i]],
                    "planned": ACTIONS[planned.policy[i]],
                }
                for i in differ
            },
        }
    outcomes = _outcomes(world, solution, cfg, np.random.default_rng(cfg.seed))

    if args.json:
        report = {
            "world": world.map.name,
            "step_reward": cfg.step_reward,
            "gamma": cfg.gamma,
            "noise": cfg.noise,
            "method": cfg.method,
            "note": solution.note,
            "utilities": utilities_by_cell(world, solution.utilities),
            "policy": policy_by_cell(world, solution.policy),
        }
        if comparison is not None:
            report["compared_with_policy_iteration"] = comparison
        if outcomes is not None:
            report["start"] = cell_name(world.map.start)
            report["outcomes"] = outcomes
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(f"{_header(world, cfg, cfg.step_reward)} ({solution.note})")
        print("\nUtilities")
        print(format_utilities(world, solution.utilities))
        print("\nPolicy")
        print(format_policy(world, solution.policy))
        if comparison is not None:
            print(f"\nAgrees with policy iteration in {comparison['agree']} of {comparison['states']} states", end="")
            differ = ", ".join(f"{c} {d['learned']} (planned {d['planned']})" for c, d in comparison["differ"].items())
            print(f"; differs at {differ}" if differ else "")
        if outcomes is not None:
            print(f"\n{cfg.episodes} episodes from S {cell_name(world.map.start)} (seed {cfg.seed})")
            print(_format_outcomes(outcomes))
    if args.plot:
        title = f"{world.map.name}, step reward {cfg.step_reward:g}, {cfg.method}"
        plot_panels([Panel(world, solution.utilities, solution.policy, title)], args.plot)
        if not args.json:
            print(f"\nwrote {args.plot}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    import json

    import numpy as np


    cfg = config_from_args(SweepConfig, args)
    rng = np.random.default_rng(cfg.seed)
    rows, panels = [], []
    for step_reward in cfg.step_rewards:
        world = _load_world(cfg, step_reward)
        solution = _solve(world, cfg)
        outcomes = _outcomes(world, solution, cfg, rng)
        rows.append((step_reward, world, solution, outcomes))
        panels.append(Panel(world, solution.utilities, solution.policy, f"step reward {step_reward:g}"))
    world = rows[0][1]

    if args.json:
        report = {
            "world": world.map.name,
            "gamma": cfg.gamma,
            "noise": cfg.noise,
            "method": cfg.method,
            "start": None if world.map.start is None else cell_name(world.map.start),
            "results": [
                {
                    "step_reward": step_reward,
                    "utilities": utilities_by_cell(w, solution.utilities),
                    "policy": policy_by_cell(w, solution.policy),
                    **({"outcomes": outcomes} if outcomes is not None else {}),
                }
                for step_reward, w, solution, outcomes in rows
            ],
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(_header(world, cfg))
        if cfg.episodes:
            start = cell_name(world.map.start)
            print(f"{cfg.episodes} simulated episodes per step reward from S {start} (seed {cfg.seed})")
        for step_reward, w, solution, outcomes in rows:
            start = "" if w.start_state is None else f", U(S) = {solution.utilities[w.start_state]:.3f}"
            print(f"\nstep reward {step_reward:g}{start}")
            print(format_policy(w, solution.policy))
            if outcomes is not None:
                print(_format_outcomes(outcomes))
        if cfg.episodes:
            print("\n" + _format_summary(rows))
    if args.plot:
        plot_panels(panels, args.plot)
        if not args.json:
            print(f"\nwrote {args.plot}")
    return 0


def _format_summary(rows) -> str:
    """One line per step reward: where the simulated episodes ended."""
    labels = list(rows[0][3]["counts"])
    widths = [max(len(label), 6) for label in labels]
    lines = ["step reward  " + "  ".join(f"{label:>{w}}" for label, w in zip(labels, widths)) + "  mean moves"]
    for step_reward, _, _, outcomes in rows:
        counts = "  ".join(f"{outcomes['counts'][label]:>{w}}" for label, w in zip(labels, widths))
        lines.append(f"{step_reward:>11g}  {counts}  {outcomes['mean_steps']:>10.1f}")
    return "\n".join(lines)
