"""Trackers: a run's training metrics also sent to TensorBoard and/or Weights & Biases
(`--report-to`, as TRL's `report_to`). metrics.jsonl stays the source of truth: each row goes
there first, then to every tracker as scalars.

A row becomes scalars named `<method>/<stage>/<key>` (the parts the row has; `train/<key>` when
it has neither), nested dicts flattened with `/` (compare's `gold: {mean, ci_low, ...}` →
`gold/mean`), at the row's `step` (else the row's index among the rows of its prefix). Text,
booleans and non-finite numbers (metrics.jsonl writes NaN/inf as strings) are left out.

TensorBoard event files go to `<run>/tensorboard/` (written with torch's SummaryWriter, flushed
after every row so that a run in progress can be watched). W&B runs offline in `<run>/wandb/`
(`wandb sync <run>/wandb/offline-run-*` uploads it later); each prefix gets its own x-axis
(`<prefix>/step`), as a W&B run's own step must only grow.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator

import yaml

SKIPPED_KEYS = ("method", "stage", "step")


def row_prefix(row: dict) -> str:
    """`<method>/<stage>` of a metrics row (the parts it has), or `train`."""
    return "/".join(str(row[key]) for key in ("method", "stage") if row.get(key) not in (None, "")) or "train"


def _numbers(value: Any, name: str) -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _numbers(inner, f"{name}/{key}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        yield name, float(value)


def row_scalars(row: dict) -> dict[str, float]:
    """{tag: value} of a metrics row (see the module docstring), tags without the prefix."""
    return {tag: value for key, value in row.items() if key not in SKIPPED_KEYS for tag, value in _numbers(value, str(key))}


class TensorBoardTracker:
    """Scalars as TensorBoard event files in `folder`; the config as a text summary."""

    name = "tensorboard"

    def __init__(self, folder: Path, run_name: str, config: dict):
        # imported here: tensorboard loads only for runs that report to it
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        text = yaml.safe_dump(config, sort_keys=False)
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))  # a code block in markdown

    def log(self, prefix: str, step: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(f"{prefix}/{tag}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """An offline W&B run in `folder/wandb`, with the run's config; one x-axis per prefix."""

    name = "wandb"

    def __init__(self, folder: Path, run_name: str, config: dict):
        # imported here: wandb is an optional extra, checked by parse_report_to before any work
        import wandb

        os.environ["WANDB_MODE"] = "offline"
        settings = wandb.Settings(mode="offline", console="off", silent=True, save_code=False, disable_git=True,
                                  x_disable_stats=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "rlhfkit"), name=run_name, dir=str(folder),
                              config=config, settings=settings, reinit="finish_previous")
        self.prefixes: set[str] = set()

    def log(self, prefix: str, step: int, scalars: dict[str, float]) -> None:
        if prefix not in self.prefixes:
            self.prefixes.add(prefix)
            self.run.define_metric(f"{prefix}/step", hidden=True)
            self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
        self.run.log({**{f"{prefix}/{tag}": value for tag, value in scalars.items()}, f"{prefix}/step": step})

    def close(self) -> None:
        self.run.finish()


TRACKER_CLASSES = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}


class Trackers:
    """The fan-out of a run's metrics rows to the trackers of `names` (from parse_report_to)."""

    def __init__(self, names: tuple[str, ...], folder: Path, run_name: str, config: dict):
        self.trackers = [TRACKER_CLASSES[name](folder, run_name, config) for name in names]
        self.rows_seen: dict[str, int] = {}

    def log(self, row: dict) -> None:
        if not self.trackers:
            return
        prefix = row_prefix(row)
        index = self.rows_seen.get(prefix, 0)
        self.rows_seen[prefix] = index + 1
        step = row["step"] if isinstance(row.get("step"), int) and not isinstance(row["step"], bool) else index
        scalars = row_scalars(row)
        if scalars:
            for tracker in self.trackers:
                tracker.log(prefix, step, scalars)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []
