"""Set-up shared by the offline runs (sft, dpo, gkd, ilql): the run folder, model + device, data files split into
train/held-out."""

from __future__ import annotations

import random
import time

from rlhfkit.config import ConfigError
from rlhfkit.data.loaders import load_records
from rlhfkit.models import load_policy, resolve_device, resolve_precision
from rlhfkit.models.loading import resolve_policy_path
from rlhfkit.pipelines.run_dir import RunDir
from rlhfkit.trainers.distributed import process_device


def check_inputs(*models: str, device: str) -> None:
    """Fail on an unavailable device, then on a model name or path that resolves to nothing,
    before data is read or a run folder is made."""
    resolve_device(device)
    for model in models:
        if model:
            resolve_policy_path(model)


def open_run(cfg, prefix: str) -> RunDir:
    """The run folder (--run-name, else `prefix`-<date>-<time>) with its config.yaml written."""
    run = RunDir(cfg.output_dir, cfg.run_name or time.strftime(f"{prefix}-%Y%m%d-%H%M%S"), overwrite=cfg.overwrite,
                 resume=cfg.resume)
    run.save_config(cfg)
    return run


def load_offline_policy(model: str, device: str, precision: str, chat: str = "auto"):
    """(model, tokenizer, device, compute dtype) for a run; weights stay float32."""
    device_ = process_device(resolve_device(device))  # several GPU processes: each its own GPU
    dtype = resolve_precision(precision, device_)
    policy, tokenizer = load_policy(model, device=device_)
    if chat == "yes" and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"--chat yes, but the tokenizer of {model} has no chat template; use --chat no or auto")
    return policy, tokenizer, device_, dtype


class SplitData:
    def __init__(self, train: list, eval: list, skipped: int, kind: str):
        self.train, self.eval, self.skipped, self.kind = train, eval, skipped, kind


def load_split_data(cfg, kind: str, eval_kind: str | None = None) -> SplitData:
    """Records of `kind` from cfg.data (and cfg.eval_data, read as `eval_kind` (default `kind`),
    or a seeded cfg.eval_fraction of cfg.data). Bad rows stop the run with the loader's one-line
    error unless skip_invalid."""
    if not cfg.data:
        raise ConfigError("--data is required: a JSONL/JSON/CSV/Parquet file or a saved datasets folder")
    loaded = load_records(cfg.data, kind, skip_invalid=cfg.skip_invalid)
    skipped = len(loaded.skipped)
    for row in loaded.skipped[:5]:
        print(f"[rlhfkit] skipped {row}")
    if skipped:
        print(f"[rlhfkit] {cfg.data}: {loaded.summary()}")
    train = list(loaded.records)
    held_out: list = []
    if cfg.eval_data:
        eval_loaded = load_records(cfg.eval_data, eval_kind or kind, skip_invalid=cfg.skip_invalid)
        held_out = list(eval_loaded.records)
        skipped += len(eval_loaded.skipped)
    elif cfg.eval_fraction:
        order = list(range(len(train)))
        random.Random(cfg.seed).shuffle(order)
        n_eval = max(1, int(round(len(train) * cfg.eval_fraction)))
        if n_eval >= len(train):
            raise ConfigError(f"eval_fraction {cfg.eval_fraction} of {len(train)} rows leaves nothing to train on")
        held_out = [train[i] for i in order[:n_eval]]
        train = [train[i] for i in sorted(order[n_eval:])]
    return SplitData(train, held_out, skipped, kind)


def apply_task_defaults(cfg, task, fallback: int = 24) -> None:
    """Fill the generation options the user left unset (None) with the task's defaults:
    `max_new_tokens` becomes the task's own, or `fallback` where there is no task."""
    if getattr(cfg, "max_new_tokens", 0) is None:
        cfg.max_new_tokens = task.max_new_tokens if task is not None else fallback
