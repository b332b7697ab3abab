"""Configs of the offline trainers: `rlhfkit sft` and `rlhfkit dpo` (DPO, IPO, KTO).

One flat dataclass per command; a field's docstring is its `--help` (see rlhfkit.config).
Kept free of torch imports so the CLI can build its parser instantly. The data file is
checked by the command (`run_sft` / `run_dpo`), not here, so that the Python API
(`train_sft`, `train_dpo`) can use these configs with in-memory data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import ConfigError


def _check_common(cfg) -> None:
    """Checks shared by SFTConfig and DPOConfig; derives the learning rate once."""
    if cfg.batch_size < 1 or cfg.micro_batch_size < 1:
        raise ConfigError("batch_size and micro_batch_size must be at least 1")
    if cfg.batch_size % cfg.micro_batch_size:
        raise ConfigError(
            f"batch_size ({cfg.batch_size}) must be a multiple of micro_batch_size ({cfg.micro_batch_size}): "
            "each optimiser step accumulates whole micro-batches"
        )
    if cfg.epochs < 1 and cfg.max_steps < 1:
        raise ConfigError("give epochs >= 1 or max_steps >= 1: otherwise there is nothing to train")
    if cfg.max_steps < 0 or cfg.warmup_steps < 0 or cfg.eval_every < 0:
        raise ConfigError("max_steps, warmup_steps and eval_every cannot be negative")
    if not 0.0 <= cfg.eval_fraction < 1.0:
        raise ConfigError(f"eval_fraction must lie in [0, 1), got {cfg.eval_fraction}")
    if cfg.eval_data and cfg.eval_fraction:
        raise ConfigError("give either eval_data (a file) or eval_fraction (a held-out share of data), not both")
    if cfg.learning_rate is None:
        cfg.learning_rate = cfg.lora_learning_rate_default if cfg.lora else cfg.full_learning_rate_default
    if cfg.learning_rate <= 0:
        raise ConfigError(f"learning_rate must be positive, got {cfg.learning_rate}")
    if cfg.max_grad_norm <= 0:
        raise ConfigError("max_grad_norm must be positive")
    if cfg.lora and (cfg.lora_r < 1 or cfg.lora_alpha < 1):
        raise ConfigError("lora_r and lora_alpha must be at least 1")


@dataclass
class SFTConfig:
    """Supervised fine-tuning on demonstrations (prompt/completion or chat `messages`)."""

    data: str = ""
    """training file (JSONL/JSON/CSV/Parquet/saved dataset) of SFT rows: prompt + completion, or messages"""
    eval_data: str = ""
    """held-out file of SFT rows for eval loss and perplexity (optional)"""
    eval_fraction: float = 0.0
    """hold out this share of --data for evaluation instead of --eval-data (0: no evaluation)"""
    skip_invalid: bool = False
    """skip bad rows (counted and reported) instead of stopping at the first"""
    model: str = "smollm2-135m-instruct"
    """model to fine-tune: the embedded default, an HF id, a local folder or a .gguf file"""
    output_dir: str = "runs"
    """parent folder of run folders"""
    run_name: str = ""
    """this run's folder under output_dir (default: sft-<date>-<time>)"""
    overwrite: bool = False
    """reuse a non-empty run folder"""
    chat: Literal["auto", "yes", "no"] = "auto"
    """format examples with the tokenizer's chat template (auto: when it has one; chat rows always use it)"""
    loss_on: Literal["completion", "all"] = "completion"
    """tokens that carry the loss: the completion (last assistant turn) only, or every token"""
    packing: bool = False
    """pack several examples into each max_length row (examples do not attend to each other, see docs)"""
    max_length: int = 512
    """longest example (or packed row) in tokens; longer examples lose prompt tokens from the left, then completion tokens from the right"""
    epochs: int = 1
    """passes over the training data"""
    max_steps: int = 0
    """if > 0: train exactly this many optimiser steps, cycling the data as often as needed (overrides epochs)"""
    batch_size: int = 8
    """examples (packed rows with --packing) per optimiser step"""
    micro_batch_size: int = 8
    """examples per forward/backward; batch_size / micro_batch_size gradient-accumulation steps"""
    learning_rate: float | None = None
    """AdamW learning rate; unset: 2e-4 with LoRA, 2e-5 for full fine-tuning"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    lr_scheduler: Literal["constant", "linear", "cosine"] = "linear"
    """learning-rate schedule after warm-up: constant, linear or cosine decay to 0"""
    warmup_steps: int = 0
    """linear warm-up steps"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm to this"""
    save_merged: bool = True
    """with LoRA, save checkpoints/final as the merged full model (usable as --model elsewhere); otherwise the adapter only"""
    lora: bool = True
    """train a LoRA adapter (otherwise every weight: full fine-tuning)"""
    lora_r: int = 16
    """LoRA rank"""
    lora_alpha: int = 32
    """LoRA α (scale α/r)"""
    lora_dropout: float = 0.0
    """dropout on the LoRA path"""
    lora_top_layers: int = 0
    """put LoRA only in the last N blocks (0: all blocks)"""
    eval_every: int = 0
    """evaluate every N optimiser steps (0: at the end of each epoch)"""
    seed: int = 0
    """random seed (data order, held-out split, initialisation of the adapter)"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision: auto picks bf16 where the hardware has it (CUDA, AVX512-BF16 CPUs)"""

    lora_learning_rate_default = 2e-4
    full_learning_rate_default = 2e-5

    def __post_init__(self):
        _check_common(self)
        if self.max_length < 2:
            raise ConfigError("max_length must be at least 2 tokens (one to condition on, one to predict)")

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // self.micro_batch_size


@dataclass
class DPOConfig:
    """Direct preference optimisation from offline data: DPO, IPO or KTO."""

    data: str = ""
    """training file: pairwise rows (prompt, chosen, rejected[, label]); for --loss kto also thumbs rows (prompt, response, thumbs_up)"""
    eval_data: str = ""
    """held-out file of the same kind for eval metrics (optional)"""
    eval_fraction: float = 0.0
    """hold out this share of --data for evaluation instead of --eval-data (0: no evaluation)"""
    skip_invalid: bool = False
    """skip bad rows (counted and reported) instead of stopping at the first"""
    model: str = "smollm2-135m-instruct"
    """policy to train: the embedded default, an HF id, a local folder or a .gguf file"""
    ref_model: str = ""
    """reference model π_ref (default: the initial policy; with LoRA its adapter-disabled base)"""
    output_dir: str = "runs"
    """parent folder of run folders"""
    run_name: str = ""
    """this run's folder under output_dir (default: <loss>-<date>-<time>)"""
    overwrite: bool = False
    """reuse a non-empty run folder"""
    loss: Literal["dpo", "ipo", "kto"] = "dpo"
    """dpo: −log σ(β·h); ipo: (h − 1/(2τ))²; kto: unpaired desirable/undesirable (REFERENCES.md)"""
    beta: float = 0.1
    """β of DPO and KTO; also scales the logged implicit reward β·log(π/π_ref) for every loss"""
    tau: float = 0.1
    """τ of IPO: the loss pulls the log-ratio difference h towards 1/(2τ)"""
    desirable_weight: float = 1.0
    """KTO λ_D, weight of desirable examples"""
    undesirable_weight: float = 1.0
    """KTO λ_U, weight of undesirable examples"""
    precompute_ref: bool = True
    """compute reference log-probs once before training (no reference forward passes while training)"""
    chat: Literal["auto", "yes", "no"] = "auto"
    """wrap prompts in the tokenizer's chat template (auto: when it has one)"""
    max_prompt_tokens: int = 256
    """longer prompts keep their last tokens"""
    max_response_tokens: int = 256
    """longer responses keep their first tokens (and lose their EOS)"""
    epochs: int = 1
    """passes over the training data"""
    max_steps: int = 0
    """if > 0: train exactly this many optimiser steps, cycling the data as often as needed (overrides epochs)"""
    batch_size: int = 8
    """pairs (KTO: examples) per optimiser step"""
    micro_batch_size: int = 8
    """pairs (KTO: examples) per forward/backward; batch_size / micro_batch_size accumulation steps"""
    learning_rate: float | None = None
    """AdamW learning rate; unset: 5e-5 with LoRA, 1e-6 for full fine-tuning (as in TRL)"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    lr_scheduler: Literal["constant", "linear", "cosine"] = "linear"
    """learning-rate schedule after warm-up: constant, linear or cosine decay to 0"""
    warmup_steps: int = 0
    """linear warm-up steps"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm to this"""
    save_merged: bool = True
    """with LoRA, save checkpoints/final as the merged full model (usable as --model elsewhere); otherwise the adapter only"""
    lora: bool = True
    """train a LoRA adapter (the reference is then the adapter-disabled base: no second copy)"""
    lora_r: int = 16
    """LoRA rank"""
    lora_alpha: int = 32
    """LoRA α (scale α/r)"""
    lora_dropout: float = 0.0
    """dropout on the LoRA path"""
    lora_top_layers: int = 0
    """put LoRA only in the last N blocks (0: all blocks)"""
    eval_every: int = 0
    """evaluate every N optimiser steps (0: at the end of each epoch)"""
    seed: int = 0
    """random seed (data order, held-out split, KTO's mismatched pairs)"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """compute precision: auto picks bf16 where the hardware has it (CUDA, AVX512-BF16 CPUs)"""

    lora_learning_rate_default = 5e-5
    full_learning_rate_default = 1e-6

    def __post_init__(self):
        _check_common(self)
        if self.beta <= 0 or self.tau <= 0:
            raise ConfigError("beta and tau must be positive")
        if self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ConfigError("desirable_weight and undesirable_weight (KTO's λ_D, λ_U) must be positive")
        if self.max_prompt_tokens < 1 or self.max_response_tokens < 1:
            raise ConfigError("max_prompt_tokens and max_response_tokens must be at least 1")

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // self.micro_batch_size
