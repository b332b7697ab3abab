"""On-policy distillation (GKD; Agarwal et al. 2024): SFT's loop with two pieces replaced.

    for each batch: with probability λ the student samples its own completions of the batch's
    prompts (else the data's completions stay) → student and teacher forward → generalised
    JSD(β) per completion token (algorithms/distillation.py) → step → log → eval → checkpoint

The teacher is frozen and only read; student and teacher must share the tokenizer (the loss
compares their distributions token id by token id), `check_same_tokenizer` says so before any
weights load. Held-out evaluation reports the JSD on the held-out completions (`loss`) and on the
student's own samples of the held-out prompts, drawn with a fixed seed (`on_policy_jsd`).
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import torch

from rlhfkit.algorithms.distillation import generalized_jsd_loss
from rlhfkit.config import ConfigError
from rlhfkit.data.collators import SFTExample
from rlhfkit.generation.sampling import SamplingParams, sample
from rlhfkit.models.loading import autocast_context, eos_token_ids
from rlhfkit.trainers.config import GKDConfig
from rlhfkit.trainers.sft import SFTTrainer, train_sft


def check_same_tokenizer(student_tokenizer, teacher_tokenizer, student: str, teacher: str) -> None:
    """GKD compares the two models' distributions over the same token ids: their vocabularies
    (every token and its id) must be equal. ConfigError naming the first difference otherwise."""
    a, b = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    if a == b:
        return
    only = sorted(set(a) - set(b))[:3] or sorted(set(b) - set(a))[:3]
    moved = [t for t in sorted(set(a) & set(b)) if a[t] != b[t]][:3]
    detail = f"tokens in one only: {only}" if only else f"tokens with other ids: {moved}"
    raise ConfigError(f"--teacher {teacher} has another tokenizer than the student {student} ({len(a)} vs {len(b)} "
                      f"tokens; {detail}): GKD compares their next-token distributions id by id, so they must share one")


class GKDTrainer(SFTTrainer):
    """SFTTrainer whose batches are the student's own samples with probability λ and whose loss is
    the generalised JSD to the teacher's distributions."""

    stage = "gkd"

    def __init__(self, policy, teacher, tokenizer, config: GKDConfig, total_steps: int,
                 compute_dtype: torch.dtype = torch.float32, logger: Callable[[dict], None] | None = None):
        super().__init__(policy, tokenizer, config, total_steps, compute_dtype, logger)
        self.teacher = teacher.eval().requires_grad_(False)
        self.sampling = SamplingParams(strategy="sample", temperature=config.temperature,
                                       max_new_tokens=config.max_new_tokens)
        self.eos_ids = eos_token_ids(policy, tokenizer)
        self.coin = random.Random(config.seed)  # λ's draw per batch
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.on_policy = False

    @torch.no_grad()
    def sample_completions(self, examples: Sequence[SFTExample], generator: torch.Generator) -> list[SFTExample]:
        """The examples' prompts (the tokens before the loss mask) each with a completion the student
        samples at `temperature`, EOS included when it ends; the loss mask on the completion."""
        prompts = [e.input_ids[: e.loss_mask.index(1)] if 1 in e.loss_mask else e.input_ids for e in examples]
        P = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (P - len(p)) + p for p in prompts], device=self.device)  # (B, P) left-padded
        mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        was_training = self.policy.training
        self.policy.eval()
        with autocast_context(self.device, self.compute_dtype):
            out = sample(self.policy, ids, mask, self.sampling, self.eos_ids, self.pad_id, generator)
        self.policy.train(was_training)
        lengths = out["response_mask"].sum(1).long().tolist()
        return [SFTExample(input_ids=p + out["response_ids"][b, :n].tolist(), loss_mask=[0] * len(p) + [1] * n)
                for b, (p, n) in enumerate(zip(prompts, lengths))]

    def _batch_examples(self, examples):
        self.on_policy = self.coin.random() < self.cfg.lmbda
        return self.sample_completions(examples, self.generator) if self.on_policy else list(examples)

    def _micro_loss(self, batch, num_tokens):
        """JSD(β) of the student's to the teacher's next-token distributions at each completion
        token (position t's logits predict token t + 1, so the mask is shifted by one)."""
        student = self._forward(batch)  # (B, L, V)
        with torch.no_grad(), autocast_context(self.device, self.compute_dtype):
            teacher = self.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   position_ids=batch["position_ids"], use_cache=False).logits
        V = min(student.shape[-1], teacher.shape[-1])  # embedding rows past the shared vocabulary are padding
        loss, stats = generalized_jsd_loss(student[:, :-1, :V], teacher[:, :-1, :V], batch["loss_mask"][:, 1:],
                                           self.cfg.beta, self.cfg.temperature, num_tokens=num_tokens)
        return loss, float(stats["jsd_sum"]), float(stats["tokens"])

    def sampling_state(self) -> dict:
        """λ's coin and the sampling generator, saved with each checkpoint (resume is exact)."""
        return {"coin": self.coin.getstate(), "generator": self.generator.get_state()}

    def load_sampling_state(self, state: dict) -> None:
        self.coin.setstate(state["coin"])
        self.generator.set_state(state["generator"])

    def _loss_stats(self, loss):
        return {"loss": loss, "gkd/on_policy": float(self.on_policy)}

    def evaluate(self, examples):
        """`loss`: the JSD on the held-out completions; `on_policy_jsd`: on the student's own
        samples of the held-out prompts (the same seed every time)."""
        off = super().evaluate(examples)
        own = super().evaluate(self.sample_completions(examples, torch.Generator(device=self.device).manual_seed(
            self.cfg.seed + 7)))
        return {"loss": off["loss"], "tokens": off["tokens"], "on_policy_jsd": own["loss"]}


def train_gkd(student, teacher, tokenizer, records, config: GKDConfig, eval_records=(), **kwargs) -> dict:
    """Distil `teacher` into `student` on `records` (SFTRecords; train_sft's loop, arguments and
    summary, with GKD's trainer)."""
    def make_trainer(policy, tokenizer_, cfg, total, compute_dtype, logger):
        return GKDTrainer(policy, teacher, tokenizer_, cfg, total, compute_dtype, logger)

    return train_sft(student, tokenizer, records, config, eval_records, make_trainer=make_trainer, **kwargs)
