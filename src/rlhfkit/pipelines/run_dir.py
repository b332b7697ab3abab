"""A run's folder: runs/<name>/ with config.yaml, metrics.jsonl, samples.jsonl, summary.json,
checkpoints/ (and stages.json for multi-stage runs). Files that are rewritten are written
atomically (temp file, fsync, rename: trainers/checkpoint.py). Metrics rows also go to the
trackers the run's config names in report_to (pipelines/trackers.py). Under several processes
(`accelerate launch`) only process 0 writes; the others read the same folder
(`RunDir.writer`)."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from rlhfkit.config import config_to_dict, parse_report_to, save_config
from rlhfkit.pipelines.trackers import Trackers
from rlhfkit.trainers.checkpoint import Checkpointer, log_sizes, truncate_logs, write_atomic
from rlhfkit.trainers.distributed import current


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
    text = json.dumps(_clean(data), indent=2, ensure_ascii=False)
    write_atomic(Path(path), lambda fh: fh.write(text.encode("utf-8")))


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
        An empty folder, or one left by a run that stopped before its first step, is reused as is.
        Under several processes every one checks the folder, then process 0 alone writes."""
        dist = current()
        self.writer = dist.is_main
        name = name or time.strftime("%Y%m%d-%H%M%S")
        if dist.world > 1:  # one name for all processes (the time may tick between them)
            name = dist.gather_object(name)[0]
        self.path = Path(root) / name
        if resume and not self.path.exists():
            raise FileNotFoundError(f"cannot resume: run folder {self.path} does not exist")
        if self.path.is_dir() and not (overwrite or resume or never_started(self.path)):
            raise FileExistsError(f"run folder {self.path} exists and is not empty; pick another --run-name or pass --overwrite")
        dist.barrier()  # every process has checked before process 0 makes anything
        self.trackers = Trackers((), self.path, name, {})
        self._pending_trackers: tuple[tuple[str, ...], dict] | None = None
        self.resume = resume
        if not self.writer:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "checkpoints").mkdir(exist_ok=True)
        if overwrite:
            for stale in ("metrics.jsonl", "samples.jsonl"):
                (self.path / stale).unlink(missing_ok=True)
            for stale in ("tensorboard", "wandb"):  # the trackers' copies of the old metrics
                shutil.rmtree(self.path / stale, ignore_errors=True)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def logs(self) -> list[Path]:
        """The append-only logs that checkpoints cut back on resume."""
        return [self.path / "metrics.jsonl", self.path / "samples.jsonl"]

    def checkpointer(self, every: int, sub: str = "", start_sizes: dict[str, int] | None = None) -> Checkpointer:
        """Checkpoints in checkpoints/ (or checkpoints/<sub>/) every `every` steps; a resume
        without one cuts the logs back to `start_sizes` (default: empty)."""
        return Checkpointer(self.checkpoints / sub if sub else self.checkpoints, every, self.logs,
                            start_sizes=start_sizes if start_sizes is not None else {p.name: 0 for p in self.logs})

    def save_config(self, cfg: Any) -> None:
        """Write config.yaml (on --resume first saying which options differ from the first run's),
        and open the trackers of cfg.report_to (they record the config too)."""
        names = parse_report_to(getattr(cfg, "report_to", "none"))
        if not self.writer:
            return
        path = self.path / "config.yaml"
        if getattr(cfg, "resume", False) and path.is_file():
            before = yaml.safe_load(path.read_text()) or {}
            changed = sorted(k for k, v in config_to_dict(cfg).items() if k != "resume" and k in before and before[k] != v)
            if changed:
                print(f"[rlhfkit] warning: resuming with options that differ from the first run's ({', '.join(changed)}); "
                      "the result will not equal an uninterrupted run", flush=True)
        save_config(cfg, path)
        if names and not self.trackers.trackers:
            self._pending_trackers = (names, config_to_dict(cfg))

    def _open_trackers(self) -> None:
        """Open the trackers at the first metrics row, when a resumed run has cut metrics.jsonl back
        to its checkpoint. A resumed run's tracker copies are rebuilt from metrics.jsonl as it now
        stands (the old copies may hold rows past the checkpoint, and W&B would start a second run)."""
        names, config = self._pending_trackers
        self._pending_trackers = None
        if self.resume:
            for stale in ("tensorboard", "wandb"):
                shutil.rmtree(self.path / stale, ignore_errors=True)
        self.trackers = Trackers(names, self.path, self.path.name, config)
        metrics = self.path / "metrics.jsonl"
        if self.resume and metrics.is_file():
            for line in metrics.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self.trackers.log(json.loads(line))

    def _append(self, filename: str, row: dict) -> None:
        if not self.writer:
            return
        with open(self.path / filename, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_clean(row), ensure_ascii=False) + "\n")

    def log_metrics(self, row: dict) -> None:
        """Append the row to metrics.jsonl (the source of truth), then send it to the trackers."""
        if self._pending_trackers is not None:
            self._open_trackers()
        self._append("metrics.jsonl", row)
        self.trackers.log(_clean(row))

    def close(self) -> None:
        """Close the trackers (TensorBoard's writer, the W&B run); metrics.jsonl needs nothing."""
        self.trackers.close()

    def log_samples(self, rows: list[dict]) -> None:
        for row in rows:
            self._append("samples.jsonl", row)

    def write_summary(self, summary: dict) -> None:
        if not self.writer:
            return
        write_json_atomic(self.path / "summary.json", summary)

class Stages:
    """The finished stages of a multi-stage run (quickstart's stages, compare's methods), in
    stages.json: each with its result (JSON) and the logs' sizes when it finished. A resumed run
    reuses a finished stage's result; an unfinished stage starts from the logs as they were when
    the stage before it finished (or from its own checkpoint)."""

    def __init__(self, run: RunDir, resume: bool):
        self.run = run
        self.path = run.path / "stages.json"
        self.done: dict[str, dict] = json.loads(self.path.read_text()) if resume and self.path.exists() else {}
        if not resume and run.writer:
            self.path.unlink(missing_ok=True)

    def result(self, name: str) -> Any:
        """The result of finished stage `name`, or None."""
        entry = self.done.get(name)
        return None if entry is None else entry["result"]

    def start_sizes(self) -> dict[str, int]:
        """The logs' sizes when the last finished stage ended (empty logs before the first)."""
        if self.done:
            return list(self.done.values())[-1]["log_sizes"]
        return {p.name: 0 for p in self.run.logs}

    def begin(self) -> dict[str, int]:
        """Cut the logs back to where the last finished stage left them; returns those sizes."""
        sizes = self.start_sizes()
        if self.run.writer:
            truncate_logs(self.run.logs, sizes)
        return sizes

    def finish(self, name: str, result: Any) -> None:
        self.done[name] = {"result": _clean(result), "log_sizes": log_sizes(self.run.logs)}
        if self.run.writer:
            write_json_atomic(self.path, self.done)
