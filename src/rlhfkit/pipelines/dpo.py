"""`rlhfkit dpo`: load data and models, train with `trainers.dpo`, write the run folder."""

from __future__ import annotations

import time

from rlhfkit.config import ConfigError
from rlhfkit.data.loaders import iter_rows
from rlhfkit.evaluation.report import write_report
from rlhfkit.models import load_policy
from rlhfkit.pipelines.common import check_inputs, load_offline_policy, load_split_data, open_run
from rlhfkit.trainers.common import save_final
from rlhfkit.trainers.config import DPOConfig
from rlhfkit.trainers.dpo import train_dpo


def _detect_kind(path: str) -> str:
    """'pairwise' or 'thumbs' from the first row's fields."""
    for _, row in iter_rows(path):
        return "thumbs" if isinstance(row, dict) and "thumbs_up" in row and "chosen" not in row else "pairwise"
    return "pairwise"


def run_dpo(cfg: DPOConfig) -> dict:
    """`rlhfkit dpo`: load data and models, train, write the run folder, print a summary."""
    if not cfg.data:
        raise ConfigError("--data is required: a file of pairwise rows (or thumbs rows for --loss kto)")
    check_inputs(cfg.model, cfg.ref_model, device=cfg.device)
    kind = _detect_kind(cfg.data)
    if kind == "thumbs" and cfg.loss != "kto":
        raise ConfigError(f"{cfg.data} holds thumbs rows (prompt, response, thumbs_up): those train with --loss kto; "
                          f"--loss {cfg.loss} needs pairwise rows (prompt, chosen, rejected)")
    data = load_split_data(cfg, kind, eval_kind=_detect_kind(cfg.eval_data) if cfg.eval_data else None)
    run = open_run(cfg, cfg.loss)
    policy, tokenizer, device, dtype = load_offline_policy(cfg.model, cfg.device, cfg.precision, cfg.chat)
    reference = load_policy(cfg.ref_model, device=device)[0] if cfg.ref_model else None
    print(f"[rlhfkit] run folder {run.path}  device {device}  precision {str(dtype).replace('torch.', '')}  "
          f"loss {cfg.loss}  {len(data.train)} training / {len(data.eval)} held-out {kind} rows", flush=True)
    start = time.perf_counter()
    result = train_dpo(policy, tokenizer, data.train, cfg, reference, data.eval, logger=run.log_metrics, compute_dtype=dtype,
                       checkpointer=run.checkpointer(cfg.checkpoint_every), resume=cfg.resume)
    final = run.checkpoints / "final"
    if run.writer:  # several processes: the first one writes (trainers/distributed.py)
        save_final(result["policy"], tokenizer, final, cfg)
    keep = ("loss", "rewards/accuracy", "rewards/margin", "rewards/chosen", "rewards/rejected", "rewards/desirable",
            "rewards/undesirable", "kl/z0", "kl_proxy/seq_logratio")
    summary = {
        "command": "dpo", "loss": cfg.loss, "model": cfg.model, "device": str(device),
        "precision": str(dtype).replace("torch.", ""), "steps": result["steps"],
        "data": {**result["data"], "kind": kind, "skipped_rows": data.skipped},
        "train": {when: {k: v for k, v in result["train"][when].items() if k in keep} for when in ("first", "last")},
        "eval": result["eval"], "checkpoint": str(final), "seconds": round(time.perf_counter() - start, 2),
    }
    run.write_summary(summary)
    run.close()  # the trackers: their last rows are written
    first, last = summary["train"]["first"], summary["train"]["last"]
    print(f"[rlhfkit] {result['steps']} steps; train loss {first['loss']:.3f} → {last['loss']:.3f}, "
          f"reward margin {first['rewards/margin']:+.3f} → {last['rewards/margin']:+.3f}")
    if result["eval"]:
        b, a = result["eval"]["before"], result["eval"]["after"]
        if "rewards/accuracy" in a:
            print(f"[rlhfkit] held-out implicit-reward accuracy {b['rewards/accuracy']:.1%} → {a['rewards/accuracy']:.1%}, "
                  f"margin {b['rewards/margin']:+.3f} → {a['rewards/margin']:+.3f}")
        else:
            print(f"[rlhfkit] held-out KTO loss {b['loss']:.3f} → {a['loss']:.3f}, "
                  f"reward margin {b['rewards/margin']:+.3f} → {a['rewards/margin']:+.3f}")
    print(f"[rlhfkit] run folder: {run.path}  (summary.json, metrics.jsonl, checkpoints/final)")
    if run.writer:
        write_report(run.path)
    return summary
