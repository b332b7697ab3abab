"""`rlhfkit rm`: train a reward model from a file of feedback and write a run folder.

Thin: parsing and printing only; the training lives in rlhfkit.trainers.reward. Only argparse is
imported at module level so that `rlhfkit --help` stays instant.
"""

from __future__ import annotations

import argparse

from rlhfkit.config import add_config_arguments, config_from_args
from rlhfkit.pipelines.config import RMConfig

DATA_FORMATS = """\
row fields per --kind (JSONL shown; CSV/Parquet/saved datasets use the same columns):
  pairwise  {"prompt": P, "chosen": A, "rejected": B, "label": 1.0, "margin": 0.0}
            label = P(chosen preferred): 1 hard (default), 0.5 tie, in between a soft label;
            margin (optional, >= 0) is subtracted from the score difference
  ranking   {"prompt": P, "responses": [best, second, ..., worst]}   K >= 2, all C(K,2) pairs
  rating    {"prompt": P, "response": R, "rating": 7}   ratings are standardised (train mean/std)
  thumbs    {"prompt": P, "response": R, "thumbs_up": true}
  rewrite   {"prompt": P, "original": R, "rewrite": R2}   trained as R2 preferred over R
  stepwise  {"prompt": P, "completions": [step1, step2], "labels": [true, false]}   a process
            reward model: a logit of P(step correct) at each step's last token, BCE per step;
            the steps are joined with --step-separator (default a newline)

held-out "accuracy" is pairwise for every kind: the fraction of held-out comparisons the model
orders correctly (pairwise/rewrite: each pair, ties skipped; ranking: all C(K,2) pairs;
rating/thumbs: every two responses to the same prompt with different labels, or any two such
responses when no prompt has two).

The run folder holds config.yaml, metrics.jsonl, summary.json and reward_model/ (load it with
rlhfkit.models.load_reward_model, or pass it as --reward to `rlhfkit generate`).
"""


def register(subparsers) -> None:
    """Add `rm` to the top-level `rlhfkit` subparsers."""
    parser = subparsers.add_parser(
        "rm",
        help="train a reward model from pairwise, ranking, rating, thumbs or rewrite feedback",
        description="Train a reward model (a backbone + scalar head, or an ensemble of heads) on a file of\n"
        "feedback, report held-out pairwise accuracy, centre it so reference responses score 0, and save it.",
        epilog=DATA_FORMATS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file of options (command-line flags override it)")
    add_config_arguments(parser, RMConfig)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=_cmd_rm)


def _cmd_rm(args: argparse.Namespace) -> int:
    import json
    import sys

    cfg = config_from_args(RMConfig, args)
    # imported when the command runs: `rlhfkit --help` must not load torch
    from rlhfkit.pipelines.rm import run_reward_training

    echo = (lambda line: print(line, file=sys.stderr)) if args.json else print  # stdout: JSON only
    summary = run_reward_training(cfg, echo=echo)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    ev = summary.get("eval") or {}
    if ev:
        acc = ev.get("accuracy")
        acc_text = "n/a (no held-out comparisons)" if acc is None else f"{acc:.1%}"
        print(f"[rlhfkit] held-out pairwise accuracy {acc_text} over {ev.get('pairs', 0)} comparisons "
              f"({ev.get('accuracy_scope', 'pairs')}); held-out loss {ev['loss']:.4f}")
        if "ensemble_std_mean" in ev:
            print(f"[rlhfkit] ensemble of {summary['ensemble']['members']} heads: mean std across heads "
                  f"{ev['ensemble_std_mean']:.4f} on held-out responses")
    if "step_accuracy" in ev:
        print(f"[rlhfkit] held-out step accuracy {ev['step_accuracy']:.1%} (P(step correct) > 1/2 vs its label)")
    centering = summary["centering"]
    n, on = centering["responses"], centering["on"]
    if on is None:
        print(f"[rlhfkit] process reward model (step scores are log-odds, not centred) saved to {summary['reward_model']}")
        return 0
    which = f"the {n} training responses" if on == "training responses" else f"the {n} responses in {on}"
    print(f"[rlhfkit] centred: {which} score 0 on average (shift {centering['offset']:+.4f})")
    print(f"[rlhfkit] reward model saved to {summary['reward_model']}")
    return 0
