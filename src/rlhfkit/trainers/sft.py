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
from pathlib import Path
from typing import Callable, Sequence

import torch

from rlhfkit.algorithms.preference import sft_loss
from rlhfkit.data.collators import SFTExample, collate_sft, pack_examples, tokenize_sft
from rlhfkit.data.schemas import DataError
from rlhfkit.models.loading import autocast_context
from rlhfkit.trainers.common import check_finite
from rlhfkit.trainers.offline_config import SFTConfig
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
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.trainable = [p for p in policy.parameters() if p.requires_grad]
        self.optimizer, self.scheduler = make_optimizer(self.trainable, config, total_steps)
        self.step_count = 0

    def _forward(self, batch: dict[str, torch.Tensor | None]) -> torch.Tensor:
        with autocast_context(self.device, self.compute_dtype):
            out = self.policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              position_ids=batch["position_ids"], use_cache=False)
        return out.logits  # (B, L, V)

    def step(self, examples: Sequence[SFTExample]) -> dict[str, float]:
        """One optimiser step on `examples`, in micro-batches of `micro_batch_size`."""
        cfg = self.cfg
        t0 = time.perf_counter()
        # Trained tokens of the whole batch: the denominator of every micro-batch's loss. Position 0
        # of a row is never predicted, so it does not count.
        batch_tokens = sum(sum(e.loss_mask[1:]) for e in examples)
        if batch_tokens == 0:
            raise ValueError("a batch has no trained tokens (every completion truncated away?); raise max_length")
        self.policy.train()
        self.optimizer.zero_grad(set_to_none=True)
        nll_sum = 0.0
        for start in range(0, len(examples), cfg.micro_batch_size):
            batch = collate_sft(examples[start : start + cfg.micro_batch_size], self.pad_id, self.device)
            # forward + loss
            logits = self._forward(batch)
            loss, stats = sft_loss(logits, batch["input_ids"], batch["loss_mask"], num_tokens=batch_tokens)
            check_finite("SFT loss", loss.detach(), self.step_count)
            loss.backward()
            nll_sum += float(stats["nll_sum"])
        # step
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
        check_finite("gradient norm", grad_norm.detach(), self.step_count)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        # log
        loss_value = nll_sum / batch_tokens
        stats = {"step": self.step_count, "loss": loss_value, "perplexity": math.exp(min(loss_value, 50.0)),
                 "tokens": batch_tokens, "grad_norm": float(grad_norm), "learning_rate": self.scheduler.get_last_lr()[0],
                 "time/step": time.perf_counter() - t0}
        self.step_count += 1
        if self.logger is not None:
            self.logger({"stage": "sft", **stats})
        return stats

    @torch.no_grad()
    def evaluate(self, examples: Sequence[SFTExample]) -> dict[str, float]:
        """Token-mean NLL (nats) of the trained tokens of `examples` and its perplexity exp(NLL)."""
        self.policy.eval()
        nll_sum, tokens = 0.0, 0.0
        for start in range(0, len(examples), self.cfg.micro_batch_size):
            batch = collate_sft(examples[start : start + self.cfg.micro_batch_size], self.pad_id, self.device)
            _, stats = sft_loss(self._forward(batch), batch["input_ids"], batch["loss_mask"])
            nll_sum += float(stats["nll_sum"])
            tokens += float(stats["tokens"])
        loss = nll_sum / max(tokens, 1.0)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens}

    def train(self, train_examples: Sequence[SFTExample], eval_examples: Sequence[SFTExample] = (),
              progress: bool = True) -> tuple[list[dict], list[dict]]:
        """Run the configured epochs / max_steps. Returns (train history, eval history)."""
        return run_loop(self, train_examples, eval_examples, self.cfg, progress, desc="SFT",
                        postfix=lambda s: {"loss": f"{s['loss']:.3f}"})


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
              progress: bool = True, compute_dtype: torch.dtype = torch.float32) -> dict:
    """Fine-tune `policy` on demonstrations. With config.lora (and a policy that is not a LoRA
    model yet) an adapter is added first. Returns a summary dict: the trained model under
    "policy" (the peft model with LoRA), the train/eval histories, and final metrics."""
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    if not records:
        raise DataError("no training examples: pass at least one record")
    policy = prepare_policy(policy, config)
    train_examples, counts = prepare_sft_examples(tokenizer, records, config, model=policy)
    eval_examples, eval_counts = prepare_sft_examples(tokenizer, eval_records, config) if eval_records else ([], {})
    trainer = SFTTrainer(policy, tokenizer, config, total_steps(len(train_examples), config), compute_dtype, logger)
    if eval_examples:
        before = trainer.evaluate(eval_examples)
        if logger:
            logger({"stage": "sft_eval", "step": 0, **{f"eval/{k}": v for k, v in before.items()}})
    history, evals = trainer.train(train_examples, eval_examples, progress)
    return {
        "policy": policy,
        "steps": trainer.step_count,
        "data": {"train": counts, "eval": eval_counts},
        "train": {"first_loss": history[0]["loss"], "last_loss": history[-1]["loss"]},
        "eval": {"before": before, "after": evals[-1]} if eval_examples else None,
        "history": history,
        "eval_history": evals,
    }


def run_sft(cfg: SFTConfig) -> dict:
    """`rlhfkit sft`: load data and model, train, write the run folder, print a summary."""
    from rlhfkit.trainers.run_dir import RunDir

    data = load_split_data(cfg, "sft")
    run = RunDir(cfg.output_dir, cfg.run_name or time.strftime("sft-%Y%m%d-%H%M%S"), overwrite=cfg.overwrite)
    run.save_config(cfg)
    policy, tokenizer, device, dtype = load_offline_policy(cfg.model, cfg.device, cfg.precision, cfg.chat)
    print(f"[rlhfkit] run folder {run.path}  device {device}  precision {str(dtype).replace('torch.', '')}  "
          f"{len(data.train)} training / {len(data.eval)} held-out examples", flush=True)
    start = time.perf_counter()
    result = train_sft(policy, tokenizer, data.train, cfg, data.eval, logger=run.log_metrics, compute_dtype=dtype)
    truncated = result["data"]["train"]["truncated"] + result["data"]["eval"].get("truncated", 0)
    if truncated:
        print(f"[rlhfkit] {truncated} examples were longer than max_length {cfg.max_length} and were truncated")
    final = save_final(result["policy"], tokenizer, run.checkpoints / "final", cfg)
    summary = {
        "command": "sft", "model": cfg.model, "device": str(device), "precision": str(dtype).replace("torch.", ""),
        "steps": result["steps"], "data": {**result["data"], "skipped_rows": data.skipped},
        "train": result["train"], "eval": result["eval"], "checkpoint": str(final),
        "seconds": round(time.perf_counter() - start, 2),
    }
    run.write_summary(summary)
    line = f"[rlhfkit] {summary['steps']} steps; train loss {result['train']['first_loss']:.3f} → {result['train']['last_loss']:.3f}"
    if result["eval"]:
        b, a = result["eval"]["before"], result["eval"]["after"]
        line += f"; eval loss {b['loss']:.3f} → {a['loss']:.3f}, perplexity {b['perplexity']:.2f} → {a['perplexity']:.2f}"
    print(line)
    print(f"[rlhfkit] run folder: {run.path}  (summary.json, metrics.jsonl, checkpoints/final)")
    return summary


# ---------------------------------------------------------------------------------------------
# Plumbing shared by the offline trainers (sft.py, dpo.py)


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


def epoch_batches(n: int, batch_size: int, rng: random.Random) -> list[list[int]]:
    """One shuffled pass over n examples in batches (the last one may be smaller)."""
    order = list(range(n))
    rng.shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def run_loop(trainer, train_examples, eval_examples, config, progress: bool, desc: str, postfix) -> tuple[list[dict], list[dict]]:
    """The epoch/step loop shared by the offline trainers: shuffled batches → `trainer.step`,
    evaluation every `eval_every` steps (else per epoch) and at the end."""
    from tqdm.auto import tqdm

    rng = random.Random(config.seed)
    steps = total_steps(len(train_examples), config)
    history: list[dict] = []
    evals: list[dict] = []
    bar = tqdm(total=steps, desc=desc, disable=not progress, unit="step", dynamic_ncols=True)

    def evaluate() -> None:
        if eval_examples and (not evals or evals[-1]["step"] != trainer.step_count):
            result = {"step": trainer.step_count, **trainer.evaluate(eval_examples)}
            evals.append(result)
            if trainer.logger:
                trainer.logger({"stage": f"{desc.lower()}_eval", **{("step" if k == "step" else f"eval/{k}"): v for k, v in result.items()}})

    epoch = 0
    while trainer.step_count < steps:
        for indices in epoch_batches(len(train_examples), config.batch_size, rng):
            stats = trainer.step([train_examples[i] for i in indices])
            history.append({"epoch": epoch, **stats})
            bar.update(1)
            bar.set_postfix(postfix(stats))
            if config.eval_every and trainer.step_count % config.eval_every == 0:
                evaluate()
            if trainer.step_count >= steps:
                break
        epoch += 1
        if not config.eval_every:
            evaluate()
    evaluate()
    bar.close()
    return history, evals


def prepare_policy(policy, config):
    """Add a LoRA adapter when config.lora asks for one and `policy` has none yet."""
    from rlhfkit.models.lora import add_lora, is_lora

    if config.lora and not is_lora(policy):
        policy = add_lora(policy, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                          top_layers=config.lora_top_layers or None)
    return policy


def load_offline_policy(model: str, device: str, precision: str, chat: str = "auto"):
    """(model, tokenizer, device, compute dtype) for a run; weights stay float32."""
    from rlhfkit.config import ConfigError
    from rlhfkit.models import load_policy, resolve_device, resolve_precision

    device_ = resolve_device(device)
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
    from rlhfkit.config import ConfigError
    from rlhfkit.data.loaders import load_records

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


def save_final(policy, tokenizer, path: Path, config) -> Path:
    """Write the trained model and tokenizer with save_pretrained. A LoRA model is saved merged
    into its base (a folder every command can load with --model) when config.save_merged, else
    as the adapter alone. Merging happens in place (no second copy in memory), so this is the
    last thing a run does with `policy`."""
    from rlhfkit.models.lora import is_lora

    path.mkdir(parents=True, exist_ok=True)
    model = policy
    if is_lora(policy) and config.save_merged:
        model = policy.merge_and_unload()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
