"""Seconds per 100 judged pairs for each kind of judge `rlhfkit eval winrate/leaderboard` takes:
the task's gold scorer, a saved reward model (the embedded MiniLM backbone + a scalar head), the
embedded SmolLM2 as a pairwise AI judge (both orders, debiased), and the same LM as a direct 1–10
rating judge.

    .venv/bin/python benchmarks/judges.py [--pairs 100] [--kinds gold,rm,ai,rating] [--precision auto]

The pairs are the sentiment task's held-out prompts with two real review texts as responses A
and B (other prompts of the task, so no generation time is counted; ~20–40 words each). Each
judge is loaded once (its load time is printed apart), warmed up on 4 pairs, then timed on
--pairs pairs with no cache. Prints one JSON line per judge and a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from rlhfkit.evaluation.judges import build_judge
from rlhfkit.models import resolve_device
from rlhfkit.models.heads import load_reward_model
from rlhfkit.tasks import get_task


def _pairs(n: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    task = get_task("sentiment")
    texts = task.prompts("test", 3 * n, seed=seed) + task.prompts("train", 3 * n, seed=seed)
    return texts[:n], texts[n:2 * n], texts[2 * n:3 * n]


def _judge_spec(kind: str, folder: str) -> str:
    if kind == "rm":
        load_reward_model("all-minilm-l6-v2").save(folder)
        return folder
    return {"gold": "gold", "ai": "ai", "rating": "judge"}[kind]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--kinds", default="gold,rm,ai,rating")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    device = str(resolve_device(args.device))
    task = get_task("sentiment")
    prompts, a, b = _pairs(args.pairs, seed=0)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.kinds.split(","):
            start = time.perf_counter()
            judge = build_judge(_judge_spec(kind, folder + "/rm"), task, device=device, precision=args.precision,
                                batch_size=args.batch_size)
            loaded = time.perf_counter() - start
            judge.prefer(prompts[:4], a[:4], b[:4])  # warm-up
            start = time.perf_counter()
            preferences = judge.prefer(prompts, a, b)
            seconds = time.perf_counter() - start
            row = {"judge": kind, "spec": judge.name, "pairs": len(preferences), "load_seconds": round(loaded, 2),
                   "seconds": round(seconds, 3), "seconds_per_100_pairs": round(100 * seconds / len(preferences), 3),
                   "a_preferred": round(sum(p > 0.5 for p in preferences) / len(preferences), 3)}
            results.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'judge':8s} {'s / 100 pairs':>14s} {'load s':>8s}  spec")
    for r in results:
        print(f"{r['judge']:8s} {r['seconds_per_100_pairs']:>14.3f} {r['load_seconds']:>8.2f}  {r['spec']}")
    print(f"torch threads {torch.get_num_threads()}, precision {args.precision}, device {device}")


if __name__ == "__main__":
    main()
