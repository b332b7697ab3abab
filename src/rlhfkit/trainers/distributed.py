"""Several processes under `accelerate launch` (or `torchrun`): the small layer the trainers call,
so that their loops keep one code path.

One process (plain `rlhfkit ...`, the tests): `current()` is `SINGLE`, whose every method gives its
input back: nothing is sharded, reduced or gathered and no process group exists, so a run is
bit-identical to one made before this layer existed.

N processes (DDP, one model replica each): every process loads the whole data set and draws the
same global batch (same seed, same data cursor); each works on its contiguous `shard` of it — rows
for sft, dpo and rm; prompts, each with all its G samples, for online RL, so group statistics
stay exact. Each loss is written as the shard's share of the global batch loss (the denominators
are global: the batch's token count or size), so the sum over processes of the local gradients is
the global gradient. `reduce_gradients` all-reduces (sums) them in one flat buffer before
clipping; every process then clips and steps the same optimiser on the same gradient, and the
weights stay identical (they are broadcast from process 0 once, when a trainer is built).

Why not `accelerator.prepare(model)` (torch DDP)? DDP reduces inside each backward and needs every
process to run the same number of them on one wrapped module. Our loops run a data-dependent
number of micro-batches per process (a PPO mini-batch's rows fall unevenly on the processes), and
train parameters outside the policy module (the value head, a reward model's head and ensemble
members). One flat all-reduce per optimiser step computes what DDP computes, without those
constraints. FSDP and DeepSpeed shard the parameters themselves and need `prepare`; they are
refused with a clear message (README, "Scale out").

Batch statistics (score normalisation, advantage whitening, REINFORCE's baseline, the KL
controller's observed KL, the logged means) are computed on the global batch: `gather_rows`
collects the processes' row tensors (rows in process order, which is the one-process order),
the same function as in one process runs on them, and `own_rows` keeps this process's rows.
Accelerate provides the launch, the process group (gloo on CPU, NCCL on GPUs), the device of each
process and the collectives.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import torch

from rlhfkit.config import ConfigError


class DistributedError(ConfigError):
    """A launch configuration these trainers cannot run (FSDP, DeepSpeed, a batch that cannot be split)."""


class Single:
    """One process: every method is the identity."""

    world = 1
    rank = 0
    is_main = True

    def shard(self, items: Sequence) -> Sequence:
        """This process's contiguous block of a global batch (here: all of it)."""
        return items

    def bounds(self, n: int) -> tuple[int, int]:
        """[start, stop) of this process's block of n items."""
        return 0, n

    def reduce_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Sum the gradients of `params` over the processes (here: nothing to do)."""

    def broadcast_parameters(self, params: Sequence[torch.Tensor]) -> None:
        """Copy process 0's values of `params` to every process (here: nothing to do)."""

    def sum(self, value: float) -> float:
        return value

    def sum_dict(self, values: dict[str, float]) -> dict[str, float]:
        """Key-wise sum over the processes (keys missing on a process count as 0)."""
        return values

    def mean_dict(self, values: dict[str, float]) -> dict[str, float]:
        """Key-wise mean over the processes that have each key."""
        return values

    def gather_rows(self, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        """Every process's rows, in process order; dim 1 right-padded with 0 to the longest."""
        return tensors

    def own_rows(self, tensor: torch.Tensor | None, columns: int | None = None) -> torch.Tensor | None:
        """This process's rows of a gathered tensor (and its first `columns` columns)."""
        return tensor

    def on_global_rows(self, fn, *tensors: torch.Tensor | None, columns: int | None = None):
        """fn applied to the global batch's rows of `tensors` (`gather_rows`), cut back to this
        process's rows (`own_rows`; each result, when fn returns a tuple). One process: fn(*tensors)."""
        return fn(*tensors)

    def gather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        pass

    def rank_seed(self, seed: int) -> int:
        """A seed for what each process draws on its own (sampling): `seed` on process 0."""
        return seed


SINGLE = Single()


class Distributed(Single):
    """N processes of one run, started by `accelerate launch` / `torchrun` (see the module docstring)."""

    def __init__(self, accelerator):
        from accelerate.utils import DistributedType

        kind = accelerator.distributed_type
        if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            raise DistributedError(
                f"accelerate launch with {kind.value}: rlhfkit's trainers keep a full model replica per process "
                "(DDP); FSDP and DeepSpeed need parameter sharding they do not do yet. Launch with "
                "examples/accelerate/ddp.yaml (or --multi_gpu) instead")
        self.accelerator = accelerator
        self.world = accelerator.num_processes
        self.rank = accelerator.process_index
        self.is_main = accelerator.is_main_process
        self._rows: list[int] | None = None  # rows per process of the last gather_rows

    # -- data -------------------------------------------------------------------------------
    def bounds(self, n: int) -> tuple[int, int]:
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def shard(self, items: Sequence) -> Sequence:
        start, stop = self.bounds(len(items))
        return items[start:stop]

    def rank_seed(self, seed: int) -> int:
        return seed + 7919 * self.rank

    # -- gradients and weights --------------------------------------------------------------
    @torch.no_grad()
    def reduce_gradients(self, params: Sequence[torch.Tensor]) -> None:
        params = list(params)
        if not params:
            return
        has = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
        torch.distributed.all_reduce(has)
        # a parameter with no gradient on every process keeps none (AdamW then skips it, as in one process)
        live = [p for p, h in zip(params, has.tolist()) if h > 0]
        if not live:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in live])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p in live:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n

    @torch.no_grad()
    def broadcast_parameters(self, params: Sequence[torch.Tensor]) -> None:
        for p in params:
            torch.distributed.broadcast(p.data, src=0)

    # -- statistics -------------------------------------------------------------------------
    def sum(self, value: float) -> float:
        return float(sum(self.gather_object(float(value))))

    def sum_dict(self, values: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in self.gather_object(dict(values)):
            for key, value in part.items():
                out[key] = out.get(key, 0.0) + value
        return out

    def mean_dict(self, values: dict[str, float]) -> dict[str, float]:
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for part in self.gather_object(dict(values)):
            for key, value in part.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    sums[key] = sums.get(key, 0.0) + value
                    counts[key] = counts.get(key, 0) + 1
                else:
                    sums.setdefault(key, value)
        return {k: (v / counts[k] if k in counts else v) for k, v in sums.items()}

    def gather_rows(self, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        # one collective for all the tensors
        gathered = self.gather_object([None if t is None else t.detach().cpu() for t in tensors])
        out = []
        for i, tensor in enumerate(tensors):
            if tensor is None:
                out.append(None)
                continue
            parts = [rank_parts[i] for rank_parts in gathered]
            self._rows = [p.shape[0] for p in parts]
            if tensor.dim() > 1:
                width = max(p.shape[1] for p in parts)
                parts = [torch.nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, width - p.shape[1])) for p in parts]
            out.append(torch.cat(parts).to(tensor.device))
        return tuple(out)

    def own_rows(self, tensor: torch.Tensor | None, columns: int | None = None) -> torch.Tensor | None:
        if tensor is None:
            return None
        start = sum(self._rows[: self.rank])
        rows = tensor[start : start + self._rows[self.rank]]
        return rows[:, :columns] if columns is not None and rows.dim() > 1 else rows

    def on_global_rows(self, fn, *tensors: torch.Tensor | None, columns: int | None = None):
        result = fn(*self.gather_rows(*tensors))
        if isinstance(result, tuple):
            return tuple(self.own_rows(r, columns) for r in result)
        return self.own_rows(result, columns)

    def gather_object(self, obj: Any) -> list[Any]:
        parts: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(parts, obj)
        return parts

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()


_CURRENT: Single | None = None


def launched_world_size() -> int:
    """The number of processes the launcher started (1 without a launcher)."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def single_process_cpu_launch() -> bool:
    """True when `accelerate launch --cpu --num_processes N` (N > 1) started this one process:
    Accelerate sets MASTER_ADDR for N > 1 but, without an mpirun host file, runs a single
    process on the CPU."""
    return (
        launched_world_size() == 1
        and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1")
        and "MASTER_ADDR" in os.environ
    )


CPU_LAUNCH_NOTE = (
    "rlhfkit: note: `accelerate launch --cpu --num_processes N` started one process "
    "(Accelerate's multi-CPU launch goes through mpirun and a host file); this run is a single "
    "process. For N gloo processes on a CPU use `accelerate launch --multi_gpu --num_processes N`."
)


def current() -> Single:
    """The run's processes: `SINGLE` unless a launcher started more than one (then the
    Accelerator is made once, on the first call)."""
    global _CURRENT
    if _CURRENT is None:
        if launched_world_size() > 1:
            from accelerate import Accelerator

            # without a GPU, Accelerate makes a gloo group on the CPU only when told cpu=True
            _CURRENT = Distributed(Accelerator(cpu=not torch.cuda.is_available()))
        else:
            if single_process_cpu_launch():
                print(CPU_LAUNCH_NOTE, file=sys.stderr)
            _CURRENT = SINGLE
    return _CURRENT


def process_device(default: torch.device) -> torch.device:
    """The device of this process: under several processes on GPUs, its own GPU (the launcher's
    LOCAL_RANK); otherwise `default`."""
    dist = current()
    if isinstance(dist, Distributed) and dist.accelerator.device.type != "cpu":
        return dist.accelerator.device
    return default
