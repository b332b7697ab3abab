"""`rlhfkit sft`: load data and model, train with `trainers.sft`, write the run folder."""

from __future__ import annotations

import time

from rlhfkit.evaluation.report import write_report
from rlhfkit.pipelines.common import check_inputs, load_offline_policy, load_split_data, open_run
from rlhfkit.trainers.common import save_final
from rlhfkit.trainers.config import SFTConfig
from rlhfkit.trainers.sft import train_sft


def run_sft(cfg: SFTConfig) -> dict:
    """`rlhfkit sft`: load data and model, train, write the run folder, print a summary."""
    check_inputs(cfg.model, device=cfg.device)
    data = load_split_data(cfg, "sft")
    run = open_run(cfg, "sft")
    policy, tokenizer, device, dtype = load_offline_policy(cfg.model, cfg.device, cfg.precision, cfg.chat)
    print(f"[rlhfkit] run folder {run.path}  device {device}  precision {str(dtype).replace('torch.', '')}  "
          f"{len(data.train)} training / {len(data.eval)} held-out examples", flush=True)
    start = time.perf_counter()
    result = train_sft(policy, tokenizer, data.train, cfg, data.eval, logger=run.log_metrics, compute_dtype=dtype,
                       checkpointer=run.checkpointer(cfg.checkpoint_every), resume=cfg.resume)
    truncated = result["data"]["train"]["truncated"] + result["data"]["eval"].get("truncated", 0)
    if truncated:
        print(f"[rlhfkit] {truncated} examples were longer than max_length {cfg.max_length} and were truncated")
    final = run.checkpoints / "final"
    if run.writer:  # several processes: the first one writes (trainers/distributed.py)
        save_final(result["policy"], tokenizer, final, cfg)
    summary = {
        "command": "sft", "model": cfg.model, "device": str(device), "precision": str(dtype).replace("torch.", ""),
        "steps": result["steps"], "data": {**result["data"], "skipped_rows": data.skipped},
        "train": result["train"], "eval": result["eval"], "checkpoint": str(final),
        "seconds": round(time.perf_counter() - start, 2),
    }
    run.write_summary(summary)
    run.close()  # the trackers: their last rows are written
    line = f"[rlhfkit] {summary['steps']} steps; train loss {result['train']['first_loss']:.3f} → {result['train']['last_loss']:.3f}"
    if result["eval"]:
        b, a = result["eval"]["before"], result["eval"]["after"]
        line += f"; eval loss {b['loss']:.3f} → {a['loss']:.3f}, perplexity {b['perplexity']:.2f} → {a['perplexity']:.2f}"
    print(line)
    print(f"[rlhfkit] run folder: {run.path}  (summary.json, metrics.jsonl, checkpoints/final)")
    if run.writer:
        write_report(run.path)
    return summary
