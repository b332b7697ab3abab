"""Crash-safe, resumable checkpoints, shared by every trainer (sft, dpo, reward model, online RL).

A checkpoint folder holds numbered step folders and a pointer file naming the newest:

    checkpoints/step-000006/trainer_state.pt    weights (adapter or all trained), optimiser,
                                                scheduler, RNG states, data position, metrics so far
    checkpoints/latest                          "step-000006": written last

Each state file is written to a temporary name, flushed and fsynced, then renamed over its
final name (`os.replace` is atomic on POSIX); only then is the pointer rewritten the same way.
A kill at any moment leaves the pointer on a complete checkpoint (the previous one, or the new
one). A checkpoint also records the size of the run's append-only logs (metrics.jsonl) when it
was taken: resuming cuts the logs back to that size, so rows of steps after the checkpoint
(which the resumed run will log again) appear once.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from rlhfkit.trainers.distributed import current

POINTER = "latest"
STATE_FILE = "trainer_state.pt"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some file systems cannot open a folder
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write) -> None:
    """Call `write(file_object)` on `path`.tmp, fsync it, and rename it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def rng_states() -> dict[str, Any]:
    """Python's, torch's CPU and (when present) CUDA global generator states."""
    states = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def log_sizes(paths: Iterable[Path]) -> dict[str, int]:
    """Byte size of each log file (0 when it does not exist yet), by file name (so that a run
    folder can be moved and still resume)."""
    return {p.name: (p.stat().st_size if p.exists() else 0) for p in paths}


def truncate_logs(paths: Iterable[Path], sizes: dict[str, int]) -> None:
    """Cut each log back to its recorded size: the rows written after it are dropped."""
    for path in paths:
        size = sizes.get(path.name)
        if size is not None and path.exists() and path.stat().st_size > size:
            with open(path, "r+b") as fh:
                fh.truncate(size)


def tensors_of(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().cpu().clone() for p in params]


@torch.no_grad()
def copy_into(params: Iterable[torch.Tensor], saved: list[torch.Tensor]) -> None:
    params = list(params)
    if len(params) != len(saved):
        raise ValueError(f"checkpoint holds {len(saved)} tensors, the model has {len(params)}: "
                         "was it written with other options (LoRA, model, ensemble)?")
    for p, s in zip(params, saved):
        p.copy_(s)


@dataclass
class Checkpointer:
    """Where and how often a trainer checkpoints. folder: the checkpoint folder (one per trained
    thing: runs/<name>/checkpoints, or checkpoints/<stage> in a multi-stage run); every: steps
    between checkpoints (0: only when training ends); logs: the run's append-only log files;
    keep: newest step folders kept; start_sizes: the logs' sizes when this training began (a
    resume that finds no checkpoint cuts them back to these and starts at step 0)."""

    folder: Path
    every: int = 10
    logs: list[Path] = field(default_factory=list)
    keep: int = 2
    start_sizes: dict[str, int] | None = None

    def __post_init__(self):
        self.folder = Path(self.folder)

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write `state` (plus the RNG states and log sizes) as step folder `step`, then the pointer."""
        name = f"step-{step:06d}"
        target = self.folder / name
        full = {**state, "step": step, "rng": rng_states(), "log_sizes": log_sizes(self.logs)}
        dist = current()
        if dist.world > 1:  # every process calls save; each one's RNG states go in, process 0 writes
            full["rank_rng"] = dist.gather_object(full["rng"])
            if not dist.is_main:
                return target
        target.mkdir(parents=True, exist_ok=True)
        write_atomic(target / STATE_FILE, lambda fh: torch.save(full, fh))
        write_atomic(self.folder / POINTER, lambda fh: fh.write(f"{name}\n".encode()))
        self._prune(keep_name=name)
        return target

    def _prune(self, keep_name: str) -> None:
        steps = sorted(p for p in self.folder.glob("step-*") if p.is_dir())
        for old in steps[: max(0, len(steps) - self.keep)]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Path | None:
        """The state file the pointer names, or None when there is no complete checkpoint."""
        pointer = self.folder / POINTER
        if not pointer.is_file():
            return None
        path = self.folder / pointer.read_text().strip() / STATE_FILE
        return path if path.is_file() else None

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint's state with the RNG states restored and the logs cut back to
        where they were when it was written; None when there is none (the logs cut back to
        start_sizes). Tensors come back on the CPU (RNG states must be CPU tensors; `copy_into`
        and `Optimizer.load_state_dict` move the rest to their parameters' device)."""
        path = self.latest()
        if path is None:
            if self.start_sizes is not None and current().is_main:
                truncate_logs(self.logs, self.start_sizes)
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        dist = current()
        set_rng_states(state["rank_rng"][dist.rank] if dist.world > 1 and "rank_rng" in state else state["rng"])
        if dist.is_main:
            truncate_logs(self.logs, state["log_sizes"])
        return state


    def save_extra(self, name: str, value: Any) -> None:
        """A JSON result computed once before training (e.g. the base policy's evaluation), kept
        beside the checkpoints so a resumed run need not (and, once the weights moved, could
        not) compute it again. Written by process 0 only."""
        if not current().is_main:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(value, ensure_ascii=False)
        write_atomic(self.folder / f"{name}.json", lambda fh: fh.write(text.encode("utf-8")))

    def load_extra(self, name: str) -> Any:
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None


class EpochCursor:
    """The data order of an epoch loop and the position in it: shuffled passes over n examples
    in batches, from a seeded `random.Random`. Its `state()` resumes the loop at the next batch
    with the same order the uninterrupted run would have used."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.rng = random.Random(seed)
        self.epoch = -1
        self.batches: list[list[int]] = []
        self.position = 0

    def _new_epoch(self) -> None:
        order = list(range(self.n))
        self.rng.shuffle(order)
        self.batches = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        self.epoch += 1
        self.position = 0

    def next_batch(self) -> tuple[int, list[int], bool]:
        """(epoch, indices, is the epoch's last batch)."""
        if self.position >= len(self.batches):
            self._new_epoch()
        indices = self.batches[self.position]
        self.position += 1
        return self.epoch, indices, self.position == len(self.batches)

    def state(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "epoch": self.epoch, "batches": self.batches, "position": self.position}

    def load(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.epoch, self.batches, self.position = state["epoch"], state["batches"], state["position"]
