"""`rlhfkit gkd`: on-policy distillation — check the tokenizers, load data, student and teacher,
train with `trainers.gkd`, write the run folder (the same layout as `rlhfkit sft`'s)."""

from __future__ import annotations

import time

from rlhfkit.data.schemas import DataError
from rlhfkit.evaluation.report import write_report
from rlhfkit.models import load_policy
from rlhfkit.models.loading import load_tokenizer
from rlhfkit.pipelines.common import check_inputs, load_offline_policy, load_split_data, open_run
from rlhfkit.trainers.common import save_final
from rlhfkit.trainers.config import GKDConfig
from rlhfkit.trainers.gkd import check_same_tokenizer, train_gkd
from rlhfkit.types import SFTRecord


def _records(cfg: GKDConfig):
    """SFT rows; with λ = 1 (the student always samples) prompt-only rows too, their completion
    left empty (only the held-out `loss` reads the data's completions then)."""
    try:
        return load_split_data(cfg, "sft")
    except DataError:
        if cfg.lmbda < 1:
            raise
    data = load_split_data(cfg, "prompt")
    as_sft = lambda rows: [SFTRecord(prompt=r.prompt, completion=str(r.meta.get("completion") or "")) for r in rows]  # noqa: E731
    data.train, data.eval = as_sft(data.train), as_sft(data.eval)
    return data


def run_gkd(cfg: GKDConfig) -> dict:
    """`rlhfkit gkd`: distil --teacher into --model on --data's prompts (and completions)."""
    check_inputs(cfg.model, cfg.teacher, device=cfg.device)
    check_same_tokenizer(load_tokenizer(cfg.model), load_tokenizer(cfg.teacher), cfg.model, cfg.teacher)
    data = _records(cfg)
    run = open_run(cfg, "gkd")
    student, tokenizer, device, dtype = load_offline_policy(cfg.model, cfg.device, cfg.precision, cfg.chat)
    teacher, _ = load_policy(cfg.teacher, device=device)
    print(f"[rlhfkit] run folder {run.path}  device {device}  {len(data.train)} training / {len(data.eval)} held-out "
          f"prompts; teacher {cfg.teacher}, λ {cfg.lmbda} on-policy, β {cfg.beta}", flush=True)
    start = time.perf_counter()
    result = train_gkd(student, teacher, tokenizer, data.train, cfg, data.eval, logger=run.log_metrics,
                       compute_dtype=dtype, checkpointer=run.checkpointer(cfg.checkpoint_every), resume=cfg.resume)
    final = run.checkpoints / "final"
    if run.writer:
        save_final(result["policy"], tokenizer, final, cfg)
    summary = {
        "command": "gkd", "model": cfg.model, "teacher": cfg.teacher, "lmbda": cfg.lmbda, "beta": cfg.beta,
        "temperature": cfg.temperature, "device": str(device), "precision": str(dtype).replace("torch.", ""),
        "steps": result["steps"], "data": {**result["data"], "skipped_rows": data.skipped},
        "on_policy_steps": sum(h["gkd/on_policy"] for h in result["history"]),
        "train": result["train"], "eval": result["eval"], "checkpoint": str(final),
        "seconds": round(time.perf_counter() - start, 2),
    }
    run.write_summary(summary)
    run.close()
    line = f"[rlhfkit] {summary['steps']} steps ({summary['on_policy_steps']:.0f} on the student's samples)"
    if result["eval"]:
        b, a = result["eval"]["before"], result["eval"]["after"]
        line += (f"; held-out JSD(β={cfg.beta}) on the data's completions {b['loss']:.4f} → {a['loss']:.4f}, "
                 f"on the student's own samples {b['on_policy_jsd']:.4f} → {a['on_policy_jsd']:.4f} nats/token")
    print(line)
    print(f"[rlhfkit] run folder: {run.path}  (summary.json, metrics.jsonl, checkpoints/final)")
    if run.writer:
        write_report(run.path)
    return summary
