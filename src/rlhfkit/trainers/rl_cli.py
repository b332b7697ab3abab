"""`rlhfkit rl` and `rlhfkit compare` (argparse only at module level: --help stays instant)."""

from __future__ import annotations

import argparse

from rlhfkit.config import add_config_arguments, config_from_args
from rlhfkit.trainers.config import CompareConfig, RLRunConfig


def _cmd_rl(args: argparse.Namespace) -> int:
    from rlhfkit.trainers.rl_run import run_rl

    run_rl(config_from_args(RLRunConfig, args))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from rlhfkit.trainers.compare import run_compare

    run_compare(config_from_args(CompareConfig, args))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rl",
        help="online RL against a reward with a KL anchor: ppo, reinforce, rloo, grpo, reinforce_pp, remax, nlpo",
        description="One loop (generate → score → shape → advantages → loss → step → log → checkpoint); "
        "--algo picks the advantage estimator, KL placement and defaults from the papers.",
    )
    p.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(p, RLRunConfig)
    p.set_defaults(func=_cmd_rl)

    p = subparsers.add_parser(
        "compare",
        help="run several methods on a task at matched sample budgets and print a table",
        description="PPO, REINFORCE, RLOO, GRPO, NLPO, DPO (on gold-labelled pairs) and best-of-n on one task: "
        "gold reward ± 95%% CI, KL to the reference, distinct-2 and wall time.",
    )
    p.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(p, CompareConfig)
    p.set_defaults(func=_cmd_compare)
