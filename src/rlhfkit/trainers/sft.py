"""Supervised fine-tuning: one readable loop.

    tokenise (+ pack) → for each batch: forward → masked cross-entropy → step → log → eval → checkpoint

The loss is the token mean of −log p over the trained tokens of the whole optimiser batch (the
completion, or every token), however the batch is split into micro-batches: each micro-batch's
summed NLL is divided by the batch's trained-token count, so accumulation equals the full batch.
The plumbing shared with trainers/dpo.py (optimiser, schedule, model set-up, data splits, the
final checkpoint) sits at the bottom of this file.
"""

from __future__ import annotations

import math
import random
import time
from typing import Callable, Sequence

import torch

from rlhfkit.algorithms.preference import sft_loss
from rlhfkit.data.collators import SFTExample, collate_sft, pack_examples, tokenize_sft
from rlhfkit.data.chat import pad_token_id
from rlhfkit.data.schemas import DataError
from rlhfkit.models.loading import autocast_context
from rlhfkit.trainers.common import (
    check_finite,
    clipped_step,
    make_optimizer,
    prepare_policy,
    resume_offline,
    run_loop,
    total_steps,
)
from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.config import SFTConfig
from rlhfkit.trainers.distributed import current
from rlhfkit.types import SFTRecord

CHAT = {"auto": None, "yes": True, "no": False}


class SFTTrainer:
    """Owns the optimiser and schedule; `step` takes one optimiser batch of examples."""

    def __init__(self, policy, tokenizer, config: SFTConfig, total_steps: int, compute_dtype: torch.dtype = torch.float32,
                 logger: Callable[[dict], None] | None = None):
        self.policy = policy
        self.tokenizer = tokenizer
        self.cfg = config
        self.compute_dtype = compute_dtype
        self.logger = logger
        self.device = next(policy.parameters()).device
        self.pad_id = pad_token_id(tokenizer)
        self.trainable = [p for p in policy.parameters() if p.requires_grad]
        self.dist = current()  # one process, or this process of several (trainers/distributed.py)
        self.dist.broadcast_parameters(self.trainable)
        self.optimizer, self.scheduler = make_optimizer(self.trainable, config, total_steps)
        self.step_count = 0

    def _forward(self, batch: dict[str, torch.Tensor | None]) -> torch.Tensor:
        with autocast_context(self.device, self.compute_dtype):
            out = self.policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              position_ids=batch["position_ids"], use_cache=False)
        return out.logits  # (B, L, V)

    # The pieces a subclass (trainers/gkd.py) replaces: the batch, the loss, the logged stats.
    stage = "sft"

    def _batch_examples(self, examples: Sequence[SFTExample]) -> list[SFTExample]:
        """The examples this optimiser step trains on (SFT: as given)."""
        return list(examples)

    def _micro_loss(self, batch: dict, num_tokens: float | None) -> tuple[torch.Tensor, float, float]:
        """(loss, summed per-token loss, trained tokens) of one collated micro-batch; the loss is
        the sum divided by `num_tokens` (default: its own tokens). SFT: the NLL, nats."""
        loss, stats = sft_loss(self._forward(batch), batch["input_ids"], batch["loss_mask"], num_tokens=num_tokens)
        return loss, float(stats["nll_sum"]), float(stats["tokens"])

    def _loss_stats(self, loss: float) -> dict[str, float]:
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    def step(self, examples: Sequence[SFTExample]) -> dict[str, float]:
        """One optimiser step on `examples`, in micro-batches of `micro_batch_size`."""
        cfg = self.cfg
        t0 = time.perf_counter()
        examples = self._batch_examples(examples)
        # Trained tokens of the whole batch: the denominator of every micro-batch's loss. Position 0
        # of a row is never predicted, so it does not count.
        batch_tokens = sum(sum(e.loss_mask[1:]) for e in examples)
        if batch_tokens == 0:
            raise ValueError("a batch has no trained tokens (every completion truncated away?); raise max_length")
        self.policy.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        local = self.dist.shard(examples)  # this process's rows (all of them in one process)
        for start in range(0, len(local), cfg.micro_batch_size):
            batch = collate_sft(local[start : start + cfg.micro_batch_size], self.pad_id, self.device)
            # forward + loss
            loss, summed, _ = self._micro_loss(batch, batch_tokens)
            check_finite(f"{self.stage.upper()} loss", loss.detach(), self.step_count)
            loss.backward()
            loss_sum += summed
        loss_sum = self.dist.sum(loss_sum)
        # step
        grad_norm = clipped_step(self.trainable, self.optimizer, self.scheduler, cfg.max_grad_norm, self.dist,
                                 self.step_count)
        # log
        stats = {"step": self.step_count, **self._loss_stats(loss_sum / batch_tokens), "tokens": batch_tokens,
                 "grad_norm": grad_norm, "learning_rate": self.scheduler.get_last_lr()[0],
                 "time/step": time.perf_counter() - t0}
        self.step_count += 1
        if self.logger is not None:
            self.logger({"stage": self.stage, **stats})
        return stats

    @torch.no_grad()
    def evaluate(self, examples: Sequence[SFTExample]) -> dict[str, float]:
        """Token mean of the loss (SFT: NLL, nats, and its perplexity exp(NLL)) over the trained
        tokens of `examples`."""
        self.policy.eval()
        loss_sum, tokens = 0.0, 0.0
        local = self.dist.shard(examples)
        for start in range(0, len(local), self.cfg.micro_batch_size):
            batch = collate_sft(local[start : start + self.cfg.micro_batch_size], self.pad_id, self.device)
            _, summed, count = self._micro_loss(batch, None)
            loss_sum += summed
            tokens += count
        loss_sum, tokens = self.dist.sum(loss_sum), self.dist.sum(tokens)
        return {**self._loss_stats(loss_sum / max(tokens, 1.0)), "tokens": tokens}

    def train(self, train_examples: Sequence[SFTExample], eval_examples: Sequence[SFTExample] = (),
              progress: bool = True, **checkpointing) -> tuple[list[dict], list[dict]]:
        """Run the configured epochs / max_steps. Returns (train history, eval history).
        checkpointing: run_loop's checkpointer, resumed and extra."""
        return run_loop(self, train_examples, eval_examples, self.cfg, progress, desc=self.stage.upper(),
                        postfix=lambda s: {"loss": f"{s['loss']:.3f}"}, **checkpointing)


@torch.no_grad()
def packing_attends_across_examples(model, tokenizer_len: int | None = None) -> bool:
    """True when `model` lets a packed example see the one before it: the logits of a short
    sequence packed after another differ from the logits of that sequence alone."""
    vocab = tokenizer_len or model.get_input_embeddings().num_embeddings
    first = torch.arange(3, 8) % vocab
    second = torch.arange(8, 12) % vocab
    device = next(model.parameters()).device
    packed = torch.cat([first, second])[None].to(device)
    positions = torch.cat([torch.arange(len(first)), torch.arange(len(second))])[None].to(device)
    was_training = model.training
    model.eval()
    together = model(input_ids=packed, position_ids=positions, use_cache=False).logits[0, len(first):]
    alone = model(input_ids=second[None].to(device), use_cache=False).logits[0]
    model.train(was_training)
    return not torch.allclose(together.float(), alone.float(), atol=1e-4)


def prepare_sft_examples(tokenizer, records: Sequence[SFTRecord], config: SFTConfig,
                         model=None) -> tuple[list[SFTExample], dict[str, int]]:
    """Tokenise (and with config.packing, pack) records. Returns (examples, counts)."""
    chat = CHAT[config.chat]
    examples = [tokenize_sft(tokenizer, r, chat, config.max_length, completion_only=config.loss_on == "completion")
                for r in records]
    counts = {"examples": len(examples), "truncated": sum(e.truncated for e in examples)}
    if config.packing:
        if model is not None and packing_attends_across_examples(model):
            print("[rlhfkit] warning: this model's attention does not honour packed-sequence position ids, so packed "
                  "examples attend to the ones before them in their row (the loss masks stay correct)", flush=True)
        examples = pack_examples(examples, config.max_length)
        counts["packed_rows"] = len(examples)
    return examples, counts


def train_sft(policy, tokenizer, records: Sequence[SFTRecord], config: SFTConfig,
              eval_records: Sequence[SFTRecord] = (), logger: Callable[[dict], None] | None = None,
              progress: bool = True, compute_dtype: torch.dtype = torch.float32,
              checkpointer: Checkpointer | None = None, resume: bool = False,
              make_trainer: Callable[..., SFTTrainer] = SFTTrainer) -> dict:
    """Fine-tune `policy` on demonstrations. With config.lora (and a policy that is not a LoRA
    model yet) an adapter is added first. checkpointer: where to checkpoint (every
    checkpointer.every steps and at the end); resume: continue from its latest checkpoint.
    make_trainer: (policy, tokenizer, config, total steps, compute dtype, logger) -> the trainer
    (trainers/gkd.py passes GKD's, its teacher bound).
    Returns a summary dict: the trained model under "policy" (the peft model with LoRA), the
    train/eval histories, and final metrics."""
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    if not records:
        raise DataError("no training examples: pass at least one record")
    policy = prepare_policy(policy, config)
    train_examples, counts = prepare_sft_examples(tokenizer, records, config, model=policy)
    eval_examples, eval_counts = prepare_sft_examples(tokenizer, eval_records, config) if eval_records else ([], {})
    trainer = make_trainer(policy, tokenizer, config, total_steps(len(train_examples), config), compute_dtype, logger)
    resumed = resume_offline(trainer, checkpointer, resume)
    before = resumed["extra"]["before"] if resumed else None
    if eval_examples and not resumed:
        before = trainer.evaluate(eval_examples)
        if logger:
            logger({"stage": f"{trainer.stage}_eval", "step": 0, **{f"eval/{k}": v for k, v in before.items()}})
    history, evals = trainer.train(train_examples, eval_examples, progress, checkpointer=checkpointer,
                                   resumed=resumed, extra={"before": before})
    return {
        "policy": policy,
        "steps": trainer.step_count,
        "data": {"train": counts, "eval": eval_counts},
        "train": {"first_loss": history[0]["loss"], "last_loss": history[-1]["loss"]},
        "eval": {"before": before, "after": evals[-1]} if eval_examples else None,
        "history": history,
        "eval_history": evals,
    }
