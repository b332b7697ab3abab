"""`rlhfkit sft`, `rlhfkit dpo`, `rlhfkit gkd` and `rlhfkit ilql`: parse options into SFTConfig /
DPOConfig / GKDConfig / ILQLConfig, run, print.

Thin: the loops live in trainers/sft.py, trainers/dpo.py, trainers/gkd.py and trainers/ilql.py. Only argparse (and our torch-free
config helpers) are imported at module level so that `rlhfkit --help` stays instant.
"""

from __future__ import annotations

import argparse
import textwrap

from rlhfkit.config import add_config_command
from rlhfkit.trainers.config import DPOConfig, GKDConfig, ILQLConfig, SFTConfig

DATA_FORMATS = """\
data files: JSONL (one object per line), JSON list, CSV, Parquet, or a folder saved by `datasets`.
Check one with `rlhfkit data validate FILE --kind KIND`.
"""

SFT_EPILOG = DATA_FORMATS + """
SFT rows (kind sft): {"prompt": "...", "completion": "..."} or
{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
(the last message is the assistant's demonstration; by default only it carries the loss).

example:
  rlhfkit sft --data demos.jsonl --eval-fraction 0.1 --epochs 2 --run-name my-sft
"""

DPO_EPILOG = DATA_FORMATS + """
pairwise rows (kind pairwise): {"prompt": "...", "chosen": "...", "rejected": "...", "label": 1.0}
(label optional: the probability that chosen is preferred; soft labels < 1 use the
label-smoothed DPO loss −[μ·log σ(βh) + (1−μ)·log σ(−βh)]).
--loss kto also reads thumbs rows (kind thumbs): {"prompt": "...", "response": "...", "thumbs_up": true};
from pairwise files, chosen becomes desirable and rejected undesirable.

examples:
  rlhfkit dpo --data prefs.jsonl --eval-fraction 0.1 --beta 0.1
  rlhfkit dpo --loss ipo --tau 0.1 --data prefs.jsonl
  rlhfkit dpo --loss kto --data thumbs.jsonl
"""

GKD_EPILOG = DATA_FORMATS + """
rows: SFT rows (kind sft: prompt + completion, or messages); each optimiser batch is, with
probability --lmbda, the student's own completions of its prompts, else the data's completions.
With --lmbda 1 prompt-only rows (kind prompt) are enough. Teacher and student must share the
tokenizer. Held-out: the JSD on the data's completions (loss) and on the student's own samples
(on_policy_jsd).

example:
  rlhfkit gkd --model ./student --teacher ./teacher --data demos.jsonl --eval-fraction 0.1
"""

ILQL_EPILOG = DATA_FORMATS + """
scored rows (kind scored): {"prompt": "...", "completion": "...", "score": 0.7}
("response" for completion and "reward" for score are read too, as `rlhfkit generate` writes them).
The score is the reward of the response's last token; the Q heads learn r_t + γ·V(s_{t+1}).
checkpoints/final decodes with the perturbed logits wherever a model is loaded by path.

examples:
  rlhfkit ilql --data scored.jsonl --max-steps 200 --run-name my-ilql
  rlhfkit generate --model runs/my-ilql/checkpoints/final --prompts task:sentiment --output ilql.jsonl
"""


def register(subparsers) -> None:
    """Add `sft`, `dpo`, `gkd` and `ilql` to the top-level `rlhfkit` subparsers."""
    add_config_command(
        subparsers, "sft", SFTConfig, "rlhfkit.pipelines.sft:run_sft",
        help="supervised fine-tuning on demonstrations (prompt/completion or chat), LoRA or full",
        description=textwrap.fill(
            "Fine-tune a causal LM on demonstrations with the loss on completion tokens (or all tokens), "
            "optional packing, LoRA or full fine-tuning, gradient accumulation, eval loss and perplexity. "
            "Writes runs/<name>/ with config.yaml, metrics.jsonl, summary.json and checkpoints/final."),
        epilog=SFT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    add_config_command(
        subparsers, "dpo", DPOConfig, "rlhfkit.pipelines.dpo:run_dpo",
        help="direct preference optimisation from offline data: DPO, IPO or KTO",
        description=textwrap.fill(
            "Train a policy directly on preferences against a frozen reference (the initial policy; with LoRA "
            "its adapter-disabled base). Logs loss, implicit-reward accuracy and margins, chosen/rejected "
            "log-probs. Writes runs/<name>/ with config.yaml, metrics.jsonl, summary.json and checkpoints/final."),
        epilog=DPO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    add_config_command(
        subparsers, "gkd", GKDConfig, "rlhfkit.pipelines.gkd:run_gkd",
        help="on-policy distillation (GKD): the student learns a teacher's token distributions on its own samples",
        description=textwrap.fill(
            "Generalised knowledge distillation (Agarwal et al. 2024): the student (--model) is trained on its own "
            "samples (with probability --lmbda, else on the data's completions) to match the teacher's next-token "
            "distributions under the generalised Jensen-Shannon divergence JSD(β) (β 0: forward KL, 1: reverse KL). "
            "Writes runs/<name>/ with config.yaml, metrics.jsonl, summary.json and checkpoints/final."),
        epilog=GKD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    add_config_command(
        subparsers, "ilql", ILQLConfig, "rlhfkit.pipelines.ilql:run_ilql",
        help="offline RL from scored responses: implicit language Q-learning (ILQL)",
        description=textwrap.fill(
            "Learn twin Q heads (Polyak-averaged targets), an expectile V head, the CQL term and the AWAC term on "
            "the LM from a fixed file of scored responses (Snell et al. 2022; trlx's defaults), then decode with "
            "log π + β·(Q − V), top-k. Writes runs/<name>/ with config.yaml, metrics.jsonl, summary.json and "
            "checkpoints/final (the LM with its heads)."),
        epilog=ILQL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
