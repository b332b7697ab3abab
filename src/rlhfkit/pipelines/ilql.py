"""`rlhfkit ilql`: load scored rows and the model, train with `trainers.ilql`, write the run folder.

checkpoints/final is a model folder (the LM, LoRA merged unless --no-save-merged) with the ILQL
heads beside it (models/ilql.py): `load_policy` on it gives the ILQL policy, so `generate
--model`, `eval` and `compare --policy` decode it with the perturbed logits.
"""

from __future__ import annotations

import time

from rlhfkit.evaluation.report import write_report
from rlhfkit.models.ilql import save_ilql
from rlhfkit.pipelines.common import check_inputs, load_offline_policy, load_split_data, open_run
from rlhfkit.trainers.common import save_final
from rlhfkit.trainers.config import ILQLConfig
from rlhfkit.trainers.ilql import train_ilql

_KEEP = ("loss", "loss/q", "loss/v", "loss/cql", "loss/awac", "values/mean", "q/mean", "advantage/mean")


def run_ilql(cfg: ILQLConfig) -> dict:
    """`rlhfkit ilql`: load data (bad rows stop it before any model loads) and the model, train,
    write the run folder, print a summary."""
    check_inputs(cfg.model, device=cfg.device)
    data = load_split_data(cfg, "scored")
    run = open_run(cfg, "ilql")
    policy, tokenizer, device, dtype = load_offline_policy(cfg.model, cfg.device, cfg.precision, cfg.chat)
    print(f"[rlhfkit] run folder {run.path}  device {device}  precision {str(dtype).replace('torch.', '')}  "
          f"{len(data.train)} training / {len(data.eval)} held-out scored rows", flush=True)
    start = time.perf_counter()
    result = train_ilql(policy, tokenizer, data.train, cfg, data.eval, logger=run.log_metrics, compute_dtype=dtype,
                        checkpointer=run.checkpointer(cfg.checkpoint_every), resume=cfg.resume)
    final = run.checkpoints / "final"
    if run.writer:  # several processes: the first one writes (trainers/distributed.py)
        save_final(result["lm"], tokenizer, final, cfg)
        save_ilql(final, result["heads"], cfg.beta, cfg.top_k)
    summary = {
        "command": "ilql", "model": cfg.model, "device": str(device), "precision": str(dtype).replace("torch.", ""),
        "steps": result["steps"], "data": {**result["data"], "skipped_rows": data.skipped},
        "train": {when: {k: v for k, v in result["train"][when].items() if k in _KEEP} for when in ("first", "last")},
        "eval": result["eval"], "decoding": {"beta": cfg.beta, "top_k": cfg.top_k},
        "checkpoint": str(final), "seconds": round(time.perf_counter() - start, 2),
    }
    run.write_summary(summary)
    run.close()  # the trackers: their last rows are written
    first, last = summary["train"]["first"], summary["train"]["last"]
    print(f"[rlhfkit] {result['steps']} steps; loss {first['loss']:.3f} → {last['loss']:.3f} "
          f"(Q {last['loss/q']:.3f}, V {last['loss/v']:.3f}, CQL {last['loss/cql']:.3f}, AWAC {last['loss/awac']:.3f}); "
          f"mean V {last['values/mean']:+.3f}")
    if result["eval"]:
        print(f"[rlhfkit] held-out loss {result['eval']['before']['loss']:.3f} → {result['eval']['after']['loss']:.3f}")
    print(f"[rlhfkit] run folder: {run.path}  (summary.json, metrics.jsonl, checkpoints/final: sample it with "
          f"`rlhfkit generate --model {final}`)")
    if run.writer:
        write_report(run.path)
    return summary
