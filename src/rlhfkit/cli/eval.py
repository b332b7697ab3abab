"""`rlhfkit eval sample | winrate | leaderboard | metrics` (argparse only at module level: --help stays instant)."""

from __future__ import annotations

import argparse

from rlhfkit.config import add_config_command
from rlhfkit.pipelines.eval_config import (
    EvalSampleConfig,
    LeaderboardConfig,
    MetricsConfig,
    WinrateConfig,
)

EVAL_EPILOG = """\
a session:
  rlhfkit eval sample --policies base=smollm2-135m-instruct,ppo=runs/quickstart,best_of_n:smollm2-135m-instruct:8:gold
  rlhfkit eval winrate --run-dir runs/eval --a ppo --b base --judge gold
  rlhfkit eval winrate --a runs/quickstart/samples.jsonl#final --b runs/quickstart/samples.jsonl#base --judge ai
  rlhfkit eval leaderboard --run-dir runs/eval --judge gold
  rlhfkit eval leaderboard --battles battles.jsonl --json
  rlhfkit eval metrics --samples runs/eval/samples/ppo.jsonl --references refs.jsonl
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate policies: samples, win rates, leaderboards, text metrics",
        description="Sample policies once into an eval run folder, then judge them: win rates with paired-bootstrap "
        "CIs and length control, Bradley–Terry/Elo leaderboards, BLEU/ROUGE/METEOR, diversity and perplexity. "
        "Every command that writes into a run folder rebuilds its report.html.",
        epilog=EVAL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    add_config_command(
        sub, "sample", EvalSampleConfig, "rlhfkit.pipelines.eval:run_sample",
        help="N responses per prompt from each policy, cached as JSONL in the eval run folder",
        description="Sample each policy (run folder, checkpoint, HF folder/id, best_of_n:POLICY:N:REWARD) on the "
        "task's test prompts or a prompt file; samples drawn with the same settings are reused.")
    add_config_command(
        sub, "winrate", WinrateConfig, "rlhfkit.pipelines.eval:run_winrate",
        help="win rate of A over B (ties ½) with a paired-bootstrap 95% CI and the length-controlled win rate",
        description="Rows are paired by prompt; the judge gives P(A ≻ B) per pair (a scoring judge: 1, ½ or 0; "
        "an AI judge: its debiased soft label).")
    add_config_command(
        sub, "leaderboard", LeaderboardConfig, "rlhfkit.pipelines.eval:run_leaderboard",
        help="Bradley–Terry ratings (Elo scale, bootstrap CIs) and online Elo from judged battles or a battles file",
        description="Round-robin (or sampled) battles among the policies of an eval run folder, or battles read "
        "from a file; ratings by maximum likelihood on all battles, mean 1000.")
    add_config_command(
        sub, "metrics", MetricsConfig, "rlhfkit.pipelines.eval:run_metrics",
        help="BLEU, ROUGE-1/2/L, METEOR, distinct-n, self-BLEU, length, entropy, perplexity, gold score",
        description="Text metrics through sacrebleu, rouge-score and nltk (WordNet installed, never downloaded), "
        "and the responses' perplexity under a reference model.")
