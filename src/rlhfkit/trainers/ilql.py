"""ILQL from a fixed dataset of scored responses (Snell et al. 2022; trlx's settings).

    tokenise → for each batch: one pass of the LM over [prompt | response] (log π_β, hidden
    states) → V, Q and target-Q heads → loss (Q, V expectile, CQL, AWAC) → step → every
    `steps_for_target_q_sync` steps a Polyak update of the target heads → log → eval → checkpoint

The math is algorithms/ilql.py; the heads and the decoding policy are models/ilql.py. The LM is
trained through a LoRA adapter (or every weight with --no-lora) by the AWAC term and by the
heads' losses through the shared hidden states. The result decodes as an `ILQLPolicy`.

Python API: `train_ilql(policy, tokenizer, data, config, eval_data=(), logger=None)`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch

from rlhfkit.algorithms.ilql import ilql_loss, polyak_update
from rlhfkit.data.chat import pad_token_id
from rlhfkit.data.collators import collate_prompt_responses, tokenize_prompts, tokenize_responses
from rlhfkit.data.schemas import DataError
from rlhfkit.models.ilql import ILQLHeads, ILQLPolicy, ilql_forward
from rlhfkit.models.loading import autocast_context
from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.common import (check_finite, clipped_step, make_optimizer, mean_stats, prepare_policy,
                                    resume_offline, run_loop, total_steps)
from rlhfkit.trainers.config import ILQLConfig
from rlhfkit.trainers.distributed import current
from rlhfkit.trainers.sft import CHAT
from rlhfkit.types import ScoredRecord


@dataclass
class ScoredExample:
    """A tokenised scored response: prompt ids (no padding), response ids (EOS last when it ended)."""

    prompt_ids: list[int]
    response_ids: list[int]
    score: float


def scored_examples(tokenizer, records: Sequence[ScoredRecord], config: ILQLConfig) -> list[ScoredExample]:
    if not records:
        raise DataError("no examples: pass at least one scored record")
    chat = CHAT[config.chat]
    prompts = tokenize_prompts(tokenizer, [r.prompt for r in records], chat, config.max_prompt_tokens)
    responses = tokenize_responses(tokenizer, [r.completion for r in records], config.max_response_tokens)
    return [ScoredExample(p, c, float(r.score)) for p, c, r in zip(prompts, responses, records)]


class ILQLTrainer:
    """Owns the LM, the heads, the optimiser over the adapter (or the LM) and the online heads,
    and the Polyak schedule of the target heads; `step` takes one optimiser batch of examples."""

    def __init__(self, policy, heads: ILQLHeads, tokenizer, config: ILQLConfig, total_steps: int,
                 compute_dtype: torch.dtype = torch.float32, logger: Callable[[dict], None] | None = None):
        self.policy, self.heads, self.cfg = policy, heads, config
        self.compute_dtype, self.logger = compute_dtype, logger
        self.device = next(policy.parameters()).device
        self.pad_id = pad_token_id(tokenizer)
        self.optimized = [p for p in policy.parameters() if p.requires_grad] + heads.online_parameters()
        # checkpoints hold the target heads too (they are state, not optimised)
        self.trainable = self.optimized + heads.target_parameters()
        self.dist = current()  # one process, or this process of several (trainers/distributed.py)
        self.dist.broadcast_parameters(self.optimized)
        self.optimizer, self.scheduler = make_optimizer(self.optimized, config, total_steps)
        self.loss_fn = partial(ilql_loss, gamma=config.gamma, tau=config.tau, cql_scale=config.cql_scale,
                               awac_scale=config.awac_scale, awac_beta=config.awac_beta)
        self.step_count = 0

    def _micro_loss(self, examples: Sequence[ScoredExample]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = collate_prompt_responses([e.prompt_ids for e in examples], [e.response_ids for e in examples],
                                         self.pad_id, self.device)
        with autocast_context(self.device, self.compute_dtype):
            out = ilql_forward(self.policy, self.heads, batch["prompt_ids"], batch["prompt_mask"],
                               batch["response_ids"], batch["response_mask"])
        scores = torch.tensor([e.score for e in examples], dtype=torch.float32, device=self.device)
        return self.loss_fn(out.q_all, out.target_q_taken, out.values, out.action_logprobs, batch["response_ids"],
                            scores, batch["response_mask"])

    def step(self, examples: Sequence[ScoredExample]) -> dict[str, float]:
        """One optimiser step on the batch mean of the loss (accumulated over micro-batches), then
        the target heads' Polyak update when it is due."""
        cfg = self.cfg
        t0 = time.perf_counter()
        self.policy.eval()  # dropout off: the targets and the decoding see the same network
        self.optimizer.zero_grad(set_to_none=True)
        parts = []
        local = self.dist.shard(examples)
        for start in range(0, len(local), cfg.micro_batch_size):
            micro = local[start : start + cfg.micro_batch_size]
            loss, stats = self._micro_loss(micro)
            check_finite("ILQL loss", loss.detach(), self.step_count)
            (loss * len(micro) / len(examples)).backward()
            parts.append((len(micro) / len(examples), stats))
        grad_norm = clipped_step(self.optimized, self.optimizer, self.scheduler, cfg.max_grad_norm, self.dist,
                                 self.step_count)
        self.step_count += 1
        if self.step_count % cfg.steps_for_target_q_sync == 0:
            polyak_update(self.heads.target_parameters(), list(self.heads.q_heads.parameters()), cfg.alpha)
        stats = {"step": self.step_count - 1, **self.dist.sum_dict(mean_stats(parts)), "grad_norm": grad_norm,
                 "learning_rate": self.scheduler.get_last_lr()[0], "time/step": time.perf_counter() - t0}
        if self.logger is not None:
            self.logger({"stage": "ilql", **stats})
        return stats

    @torch.no_grad()
    def evaluate(self, examples: Sequence[ScoredExample]) -> dict[str, float]:
        """The loss and its terms on held-out examples."""
        self.policy.eval()
        size = self.cfg.micro_batch_size
        return mean_stats([(len(examples[i : i + size]) / len(examples), self._micro_loss(examples[i : i + size])[1])
                            for i in range(0, len(examples), size)])

    def train(self, train_examples, eval_examples=(), progress: bool = True, **checkpointing):
        def postfix(s):
            return {"loss": f"{s['loss']:.3f}", "V": f"{s['values/mean']:+.3f}", "adv": f"{s['advantage/mean']:+.3f}"}

        return run_loop(self, list(train_examples), list(eval_examples), self.cfg, progress, desc="ILQL",
                        postfix=postfix, **checkpointing)


def train_ilql(policy, tokenizer, data: Sequence[ScoredRecord], config: ILQLConfig,
               eval_data: Sequence[ScoredRecord] = (), logger: Callable[[dict], None] | None = None,
               progress: bool = True, compute_dtype: torch.dtype = torch.float32,
               checkpointer: Checkpointer | None = None, resume: bool = False) -> dict:
    """Train ILQL heads (and the LM, through LoRA unless config.lora is off) on scored responses.

    Returns a dict: "policy" (the `ILQLPolicy` that decodes with the perturbed logits), "lm" (the
    trained LM, the peft model with LoRA), "heads", "steps", "data" counts, "train" (first/last
    step stats), "eval" (before/after held-out losses, or None) and "history"."""
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    policy = prepare_policy(policy, config)
    heads = ILQLHeads(policy.config.hidden_size, policy.config.vocab_size, config.two_qs).to(next(policy.parameters()).device)
    train_examples = scored_examples(tokenizer, list(data), config)
    eval_examples = scored_examples(tokenizer, list(eval_data), config) if eval_data else []
    trainer = ILQLTrainer(policy, heads, tokenizer, config, total_steps(len(train_examples), config), compute_dtype, logger)
    resumed = resume_offline(trainer, checkpointer, resume)
    before = resumed["extra"]["before"] if resumed else (trainer.evaluate(eval_examples) if eval_examples else None)
    history, evals = trainer.train(train_examples, eval_examples, progress, checkpointer=checkpointer, resumed=resumed,
                                   extra={"before": before})
    scores = [e.score for e in train_examples]
    return {
        "policy": ILQLPolicy(policy, heads, config.beta, config.top_k).eval(), "lm": policy, "heads": heads,
        "steps": trainer.step_count,
        "data": {"train": len(train_examples), "eval": len(eval_examples), "score_mean": sum(scores) / len(scores)},
        "train": {"first": history[0], "last": history[-1]},
        "eval": {"before": before, "after": {k: v for k, v in evals[-1].items() if k != "step"}} if eval_examples else None,
        "history": history,
    }
