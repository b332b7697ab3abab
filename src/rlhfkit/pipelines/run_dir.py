"""A run's folder: runs/<name>/ with config.yaml, metrics.jsonl, samples.jsonl, summary.json,
checkpoints/. Files that are rewritten are written atomically (temp file + rename). Metrics rows
also go to the trackers the run's config names in report_to (pipelines/trackers.py)."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from rlhfkit.config import config_to_dict, parse_report_to, save_config
from rlhfkit.pipelines.trackers import Trackers


def _clean(value: Any) -> Any:
    """JSON-safe floats (NaN/inf as strings), tensors as numbers."""
    if hasattr(value, "item") and getattr(value, "numel", lambda: 2)() == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def never_started(path: Path) -> bool:
    """True for a run folder that holds nothing but what a run writes before its first step
    (config.yaml and an empty checkpoints/): a run that failed on its inputs. The next run may
    take it over without --overwrite."""
    for entry in path.iterdir():
        if entry.name == "config.yaml" and entry.is_file():
            continue
        if entry.name == "checkpoints" and entry.is_dir() and not any(entry.iterdir()):
            continue
        return False
    return True


class RunDir:
    def __init__(self, root: str | Path, name: str | None = None, overwrite: bool = False, resume: bool = False):
        """resume: reuse the folder and append to its logs; overwrite: reuse it and start the logs anew.
        An empty folder, or one left by a run that stopped before its first step, is reused as is."""
        name = name or time.strftime("%Y%m%d-%H%M%S")
        self.path = Path(root) / name
        if resume and not self.path.exists():
            raise FileNotFoundError(f"cannot resume: run folder {self.path} does not exist")
        if self.path.is_dir() and not (overwrite or resume or never_started(self.path)):
            raise FileExistsError(f"run folder {self.path} exists and is not empty; pick another --run-name or pass --overwrite")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "checkpoints").mkdir(exist_ok=True)
        self.trackers = Trackers((), self.path, name, {})
        if overwrite:
            for stale in ("metrics.jsonl", "samples.jsonl"):
                (self.path / stale).unlink(missing_ok=True)
            for stale in ("tensorboard", "wandb"):  # the trackers' copies of the old metrics
                shutil.rmtree(self.path / stale, ignore_errors=True)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def save_config(self, cfg: Any) -> None:
        """Write config.yaml, and open the trackers of cfg.report_to (they record the config too)."""
        names = parse_report_to(getattr(cfg, "report_to", "none"))
        save_config(cfg, self.path / "config.yaml")
        if names and not self.trackers.trackers:
            self.trackers = Trackers(names, self.path, self.path.name, config_to_dict(cfg))

    def _append(self, filename: str, row: dict) -> None:
        with open(self.path / filename, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_clean(row), ensure_ascii=False) + "\n")

    def log_metrics(self, row: dict) -> None:
        """Append the row to metrics.jsonl (the source of truth), then send it to the trackers."""
        self._append("metrics.jsonl", row)
        self.trackers.log(_clean(row))

    def close(self) -> None:
        """Close the trackers (TensorBoard's writer, the W&B run); metrics.jsonl needs nothing."""
        self.trackers.close()

    def log_samples(self, rows: list[dict]) -> None:
        for row in rows:
            self._append("samples.jsonl", row)

    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.path / "summary.json", summary)
