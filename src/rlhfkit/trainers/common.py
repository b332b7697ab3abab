"""Pieces the trainers share: stopping on NaN/inf before weights are touched, and the offline
loops' plumbing (optimiser and schedule, shuffled epochs, the step/eval/checkpoint loop, LoRA
set-up, the final model)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rlhfkit.models.lora import add_lora, is_lora
from rlhfkit.trainers.checkpoint import Checkpointer, EpochCursor, copy_into, tensors_of


class NonFiniteError(FloatingPointError):
    """A reward, loss or gradient became NaN/inf; training stops before touching the weights."""


def check_finite(name: str, tensor: torch.Tensor, step: int) -> None:
    """Raise NonFiniteError naming the step, the quantity and the first bad index."""
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).nonzero()[0].tolist()
        raise NonFiniteError(
            f"step {step}: {name} is not finite at index {bad} (value {tensor[tuple(bad)].item()}); "
            "stopping before the weights are updated — check the reward function / lower the learning rate"
        )


def total_steps(n_examples: int, config) -> int:
    """Optimiser steps of a run over `n_examples` training examples (packed rows, pairs)."""
    if config.max_steps:
        return config.max_steps
    return config.epochs * math.ceil(n_examples / config.batch_size)


def make_optimizer(params, config, total: int):
    """AdamW plus a LambdaLR: linear warm-up over warmup_steps, then constant / linear / cosine to 0."""
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup, kind = config.warmup_steps, config.lr_scheduler

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(total - warmup, 1)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def offline_state(trainer) -> dict:
    """What an offline trainer (sft, dpo, gkd) needs to continue exactly: its trained tensors (the
    adapter, or every weight), optimiser, schedule and step count, and the random streams of one
    that samples."""
    state = {"trainable": tensors_of(trainer.trainable), "optimizer": trainer.optimizer.state_dict(),
             "scheduler": trainer.scheduler.state_dict(), "step_count": trainer.step_count}
    if hasattr(trainer, "sampling_state"):  # a trainer that samples (gkd): its random streams
        state["sampling"] = trainer.sampling_state()
    return state


def restore_offline_state(trainer, state: dict) -> None:
    copy_into(trainer.trainable, state["trainable"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.step_count = state["step_count"]
    if "sampling" in state:
        trainer.load_sampling_state(state["sampling"])


def resume_offline(trainer, checkpointer: Checkpointer | None, resume: bool) -> dict | None:
    """With `resume`, restore `trainer` from the checkpointer's latest checkpoint and return its
    state (None: nothing to resume from, the run starts at step 0)."""
    if not resume or checkpointer is None:
        return None
    state = checkpointer.load()
    if state is not None:
        restore_offline_state(trainer, state)
    return state


def run_loop(trainer, train_examples, eval_examples, config, progress: bool, desc: str, postfix,
             checkpointer: Checkpointer | None = None, resumed: dict | None = None,
             extra: dict | None = None) -> tuple[list[dict], list[dict]]:
    """The epoch/step loop shared by the offline trainers: shuffled batches → `trainer.step`,
    evaluation every `eval_every` steps (else per epoch) and at the end, a checkpoint every
    `checkpointer.every` steps and at the end. resumed: a checkpoint's state (the trainer is
    already restored from it) to continue from; extra: saved with every checkpoint."""
    cursor = EpochCursor(len(train_examples), config.batch_size, config.seed)
    steps = total_steps(len(train_examples), config)
    history: list[dict] = []
    evals: list[dict] = []
    if resumed is not None:
        cursor.load(resumed["cursor"])
        history, evals = resumed["history"], resumed["evals"]
    bar = tqdm(total=steps, initial=trainer.step_count, desc=desc, disable=not progress, unit="step", dynamic_ncols=True)

    def evaluate() -> None:
        if eval_examples and (not evals or evals[-1]["step"] != trainer.step_count):
            result = {"step": trainer.step_count, **trainer.evaluate(eval_examples)}
            evals.append(result)
            if trainer.logger:
                trainer.logger({"stage": f"{desc.lower()}_eval", **{("step" if k == "step" else f"eval/{k}"): v for k, v in result.items()}})

    def checkpoint() -> None:
        if checkpointer is not None:
            checkpointer.save(trainer.step_count, {**offline_state(trainer), "cursor": cursor.state(),
                                                   "history": history, "evals": evals, "extra": extra or {}})

    while trainer.step_count < steps:
        epoch, indices, epoch_done = cursor.next_batch()
        stats = trainer.step([train_examples[i] for i in indices])
        history.append({"epoch": epoch, **stats})
        bar.update(1)
        bar.set_postfix(postfix(stats))
        if (config.eval_every and trainer.step_count % config.eval_every == 0) or (epoch_done and not config.eval_every):
            evaluate()
        if trainer.step_count < steps and checkpointer is not None and checkpointer.due(trainer.step_count):
            checkpoint()
    evaluate()
    if resumed is None or resumed["step"] < trainer.step_count:
        checkpoint()  # the last one: a resume after the end has nothing left to do
    bar.close()
    return history, evals


def prepare_policy(policy, config):
    """Add a LoRA adapter when config.lora asks for one and `policy` has none yet."""
    if config.lora and not is_lora(policy):
        policy = add_lora(policy, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                          top_layers=config.lora_top_layers or None)
    return policy


def save_final(policy, tokenizer, path: Path, config) -> Path:
    """Write the trained model and tokenizer with save_pretrained. A LoRA model is saved merged
    into its base (a folder every command can load with --model) when config.save_merged, else
    as the adapter alone. Merging happens in place (no second copy in memory), so this is the
    last thing a run does with `policy`."""
    path.mkdir(parents=True, exist_ok=True)
    model = policy
    if is_lora(policy) and config.save_merged:
        model = policy.merge_and_unload()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def mean_stats(parts: list[tuple[float, dict[str, torch.Tensor]]]) -> dict[str, float]:
    """Weighted mean of per-micro-batch stats; weights are each micro-batch's share of the batch."""
    out: dict[str, float] = {}
    for weight, stats in parts:
        for name, value in stats.items():
            out[name] = out.get(name, 0.0) + weight * float(value)
    return out


def clipped_step(params: list, optimizer, scheduler, max_grad_norm: float, dist, step: int) -> float:
    """The end of an offline optimiser step: all-reduce the accumulated gradients (several
    processes), clip them, stop on a non-finite norm, step the optimiser and the schedule, clear
    the gradients. Returns the norm before clipping."""
    dist.reduce_gradients(params)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    check_finite("gradient norm", grad_norm.detach(), step)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)
