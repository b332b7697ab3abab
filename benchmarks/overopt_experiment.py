"""Reward over-optimization on the embedded default (Gao, Schulman, Hilton 2023), estimated at
about 30 CPU-minutes (not yet measured end to end; see the README): SmolLM2-135M-Instruct as the policy, VADER (the sentiment task's gold scorer) as
the gold reward, MiniLM proxies trained on 100 / 300 / 900 gold-labelled pairs of base samples,
best-of-n up to 32 from one pool of 32 samples per prompt, and PPO (β = 0) against the smallest
and the largest proxy.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/overopt_experiment.py [--output-dir runs] [--quick]

It is `rlhfkit overopt run` with the settings below (printed as a command line first), timed:
wall and CPU seconds (user + system of this process). It writes runs/overopt-experiment/
(overopt.json, overopt.png, report.html), copies the plot to docs/overopt.png and prints the
numbers as a markdown block for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from rlhfkit.config import build_config
from rlhfkit.pipelines.overopt import run_overopt
from rlhfkit.pipelines.overopt_config import OveroptConfig

SETTINGS = {
    "label_prompts": 200, "label_samples_per_prompt": 4, "label_counts": [100, 300, 900],
    "bon_prompts": 48, "bon_pool": 32, "bon_extrapolate_n": 8,
    "algo": "ppo", "rl_steps": 20, "rl_eval_every": 4, "rl_eval_prompts": 32, "rl_proxies": [100, 900],
    "rl_kl_coefs": [0.0], "batch_size": 32, "mini_batch_size": 16, "max_new_tokens": 20,
}

# --quick: about a quarter of the work (≈ 8 CPU-minutes), for a shared or slow machine
QUICK = {
    "label_prompts": 100, "label_counts": [50, 150, 450], "bon_prompts": 24, "rl_steps": 12, "rl_eval_every": 3,
    "rl_eval_prompts": 16, "rl_proxies": [50], "batch_size": 16, "mini_batch_size": 8,
}


def command_line(settings: dict) -> str:
    flags = []
    for key, value in settings.items():
        shown = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        flags.append(f"--{key.replace('_', '-')} {shown}")
    return "rlhfkit overopt run " + " ".join(flags)


def markdown(result: dict, wall: float, cpu: float) -> str:
    lines = [f"wall {wall / 60:.1f} min, CPU {cpu / 60:.1f} min (user + system)", "",
             "| curve | proxy labels | gold-order accuracy | α | β | R² | d* | R* (gold) |", "|---|---|---|---|---|---|---|---|"]
    accuracy = {p["labels"]: p["gold_order_accuracy"] for p in result["proxies"]}
    curves = [("best-of-n", c) for c in result["bon"]["curves"]] + [(f"{r['algo']} β={r['kl_coef']:g}", r) for r in result["rl"]]
    for name, c in curves:
        f = c["fits"]["gold"]
        if "alpha" not in f:
            lines.append(f"| {name} | {c['proxy_labels']} | | {f.get('error')} | | | | |")
            continue
        peak = "—" if f["d_peak"] is None else f"{f['d_peak']:.2f}"
        score = "—" if f["score_peak"] is None else f"{f['score_peak']:+.3f}"
        acc = accuracy.get(c["proxy_labels"])
        lines.append(f"| {name} | {c['proxy_labels']} | {'' if acc is None else f'{acc:.1%}'} | {f['alpha']:.3f} | "
                     f"{f['beta']:.3f} | {f['r2']:.3f} | {peak} | {score} |")
    lines += ["", "```", json.dumps(result["checks"], indent=1, default=str)[:3000], "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--quick", action="store_true", help="the smaller study of QUICK (≈ 8 CPU-minutes)")
    parser.add_argument("--docs", default="docs/overopt.png", help="where to copy the plot ('' to skip)")
    args = parser.parse_args()
    settings = {**SETTINGS, **(QUICK if args.quick else {})}
    print(command_line(settings), flush=True)
    cfg = build_config(OveroptConfig, overrides={**settings, "output_dir": args.output_dir,
                                                 "run_name": "overopt-experiment" + ("-quick" if args.quick else ""),
                                                 "overwrite": True})
    start, cpu_start = time.perf_counter(), os.times()
    result = run_overopt(cfg)
    wall, cpu_end = time.perf_counter() - start, os.times()
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    run = Path(args.output_dir) / cfg.run_name
    if args.docs:
        shutil.copyfile(run / "overopt.png", args.docs)
    (run / "timing.json").write_text(json.dumps({"wall_seconds": wall, "cpu_seconds": cpu}))
    print(markdown(result, wall, cpu))


if __name__ == "__main__":
    main()
