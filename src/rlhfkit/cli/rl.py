"""`rlhfkit rl` and `rlhfkit compare` (argparse only at module level: --help stays instant)."""

from __future__ import annotations

from rlhfkit.config import add_config_command
from rlhfkit.pipelines.config import CompareConfig, RLRunConfig
from rlhfkit.trainers.config import ALGORITHMS


def register(subparsers) -> None:
    add_config_command(
        subparsers, "rl", RLRunConfig, "rlhfkit.pipelines.rl:run_rl",
        help="online RL against a reward with a KL anchor: " + ", ".join(ALGORITHMS),
        description="One loop (generate → score → shape → advantages → loss → step → log → checkpoint); "
        "--algo picks the advantage estimator, KL placement and defaults from the papers.",
    )
    add_config_command(
        subparsers, "compare", CompareConfig, "rlhfkit.pipelines.compare:run_compare",
        help="run several methods on a task at matched sample budgets and print a table",
        description="PPO, REINFORCE, RLOO, GRPO, NLPO, DPO (on gold-labelled pairs), ILQL (on gold-scored base "
        "samples) and best-of-n on one task: "
        "gold reward ± 95%% CI, KL to the reference, distinct-2 and wall time.",
    )
