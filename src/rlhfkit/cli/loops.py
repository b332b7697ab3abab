"""`rlhfkit rft`, `rlhfkit iterate`, `rlhfkit pareto`: the closed loops (argparse only at module
level: --help stays instant)."""

from __future__ import annotations

from rlhfkit.config import add_config_command
from rlhfkit.pipelines.loops_config import IterateConfig, ParetoConfig, RFTConfig


def register(subparsers) -> None:
    add_config_command(
        subparsers, "rft", RFTConfig, "rlhfkit.pipelines.rft:run_rft",
        help="rejection-sampling fine-tuning: rounds of best-of-n against a reward, then SFT on the winners",
        description="Each round samples --n candidates per training prompt from the current policy, keeps the one "
        "--reward scores best, fine-tunes on the winners (LoRA, merged) and measures reward and gold on held-out "
        "prompts with 95% CIs (Llama 2's rejection sampling, RAFT).",
    )
    add_config_command(
        subparsers, "iterate", IterateConfig, "rlhfkit.pipelines.iterate:run_iterate",
        help="iterated online RLHF: rounds of sample → label → retrain the reward model → continue PPO",
        description="Each round samples pairs from the current policy, has them labelled (a simulated human, an AI "
        "judge, or people in the feedback app), retrains the reward model on every label so far and continues "
        "PPO from the last policy; gold, proxy, KL to the initial policy and the reward model's accuracy on the "
        "fresh samples are measured after every round.",
    )
    add_config_command(
        subparsers, "pareto", ParetoConfig, "rlhfkit.pipelines.pareto:run_pareto",
        help="Pareto front of a reward mix: sweep the weights, optimise each mix, measure every objective",
        description="Every weight vector on a grid over the simplex of --objectives is optimised (best-of-n from "
        "one pool per held-out prompt, or --algo RL) and every objective is measured on held-out prompts with 95% "
        "CIs; the non-dominated points are marked; writes pareto.json, a plot per pair of objectives and report.html.",
    )
