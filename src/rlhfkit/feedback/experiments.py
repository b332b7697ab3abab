"""Gold-labelled pairs for measuring an AI labeler's alignment (the RLAIF paper's table, with a
programmatic "human"): `python -m rlhfkit.feedback.experiments --n 200 --output pairs.jsonl`.

Two responses per prompt are sampled from the policy; the task's gold scorer (for `sentiment`:
VADER positivity) labels the pair, the higher score winning. Exact ties carry no preference and
are skipped (and counted). `rlhfkit label --pairs pairs.jsonl --preamble positive` then reports
how often the judge agrees with the gold labels.
"""

from __future__ import annotations

import argparse
import sys

from rlhfkit.data.loaders import write_jsonl
from rlhfkit.generation.sampling import SamplingParams, generate_batched
from rlhfkit.models import load_policy, resolve_device, resolve_precision
from rlhfkit.tasks import get_task


def gold_pairs(task_name: str = "sentiment", n: int = 200, seed: int = 0, policy: str = "smollm2-135m-instruct",
               batch_size: int = 32, device: str = "auto", precision: str = "auto") -> tuple[list[dict], int]:
    """`n` pairwise rows {prompt, chosen, rejected, label: 1.0, gold: [score chosen, score rejected]}
    and the number of tied pairs skipped on the way."""
    import torch

    task = get_task(task_name)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    model, tokenizer = load_policy(policy, device=dev)
    generator = torch.Generator(device=dev).manual_seed(seed)
    params = SamplingParams(strategy="sample", temperature=1.0, max_new_tokens=task.max_new_tokens)
    rows: list[dict] = []
    ties = 0
    round_ = 0
    while len(rows) < n and round_ < 10:
        prompts = task.prompts("train", n - len(rows) + 16, seed + round_)
        doubled = [p for p in prompts for _ in range(2)]
        rollouts = generate_batched(model, tokenizer, doubled, params, batch_size=batch_size, progress="sampling pairs",
                                    chat=task.chat, generator=generator, compute_dtype=dtype)
        responses = [r for ro in rollouts for r in ro.responses]
        scores = task.gold(doubled, responses)
        for i, prompt in enumerate(prompts):
            (a, sa), (b, sb) = (responses[2 * i], scores[2 * i]), (responses[2 * i + 1], scores[2 * i + 1])
            if not a.strip() or not b.strip():
                continue
            if sa == sb:
                ties += 1
                continue
            if len(rows) < n:
                (chosen, sc), (rejected, sr) = ((a, sa), (b, sb)) if sa > sb else ((b, sb), (a, sa))
                rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "label": 1.0, "gold": [sc, sr]})
        round_ += 1
    return rows, ties


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhfkit.feedback.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--n", type=int, default=200, help="pairs to make")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="gold_pairs.jsonl")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args(argv)
    rows, ties = gold_pairs(args.task, args.n, args.seed, device=args.device, precision=args.precision)
    write_jsonl(args.output, rows)
    print(f"wrote {len(rows)} gold-labelled pairs to {args.output}; skipped {ties} pairs whose gold scores tied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
