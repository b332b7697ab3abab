"""Direct preference optimisation from offline data — DPO, IPO, KTO — in one readable loop.

    tokenise → reference log-probs (once up front, or per batch) → for each batch:
    policy log-probs → loss (dpo | ipo | kto) → step → log → eval → checkpoint

Sequence log-probs are sums over completion tokens (EOS included) of log π(a_t|s_t), from one
`response_forward` over [left-padded prompt | right-padded response]; a batch of B pairs is one
forward over 2B rows. The reference π_ref is `reference` when given, else the LoRA policy with
its adapter disabled, else (full fine-tuning) a frozen copy — or, when reference log-probs are
precomputed, the policy itself before its first step, so no copy is kept at all.
Formulas: REFERENCES.md, "Direct preference methods"; losses in algorithms/preference.py.

Python API: `train_dpo(policy, tokenizer, data, config, reference=None, eval_data=(), logger=None)`.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import torch

from rlhfkit.algorithms.preference import dpo_loss, ipo_loss, kto_kl_estimate, kto_loss
from rlhfkit.algorithms.reference_free import cpo_loss, orpo_loss, simpo_loss
from rlhfkit.data.collators import (
    PairExample,
    UnpairedExample,
    UnpairedText,
    collate_prompt_responses,
    tokenize_pairs,
    tokenize_unpaired,
    unpaired_from_pairwise,
    unpaired_from_thumbs,
)
from rlhfkit.data.chat import pad_token_id
from rlhfkit.data.schemas import DataError
from rlhfkit.models.forward import response_forward
from rlhfkit.models.kernels import fuse_activations
from rlhfkit.models.loading import autocast_context
from rlhfkit.models.lora import frozen_copy, is_lora, reference_forward
from rlhfkit.trainers.common import (
    check_finite,
    clipped_step,
    make_optimizer,
    mean_stats,
    prepare_policy,
    resume_offline,
    run_loop,
    total_steps,
)
from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.config import DPOConfig
from rlhfkit.trainers.distributed import current
from rlhfkit.trainers.sft import CHAT
from rlhfkit.types import PairwiseRecord, ThumbsRecord

# One function per pairwise variant, chosen once when the trainer is built. IPO with
# ipo_logratio "mean" is also given each completion's token count (see `_token_counts`).
PAIR_LOSSES: dict[str, Callable[[DPOConfig], Callable]] = {
    "dpo": lambda cfg: partial(dpo_loss, beta=cfg.beta),
    "ipo": lambda cfg: partial(ipo_loss, tau=cfg.tau, beta=cfg.beta),
}

# Reference-free pairwise losses (algorithms/reference_free.py): each takes the policy's summed
# log-probs and the token counts of chosen and rejected; no reference model is built or loaded
# and no reference log-probs are computed.
REFERENCE_FREE_LOSSES: dict[str, Callable[[DPOConfig], Callable]] = {
    "orpo": lambda cfg: partial(orpo_loss, lam=cfg.orpo_lambda),
    "simpo": lambda cfg: partial(simpo_loss, beta=cfg.simpo_beta, gamma_beta_ratio=cfg.simpo_gamma_beta_ratio),
    "cpo": lambda cfg: partial(cpo_loss, beta=cfg.beta, alpha=cfg.cpo_alpha),
}


def trains_on_pairs(loss: str) -> bool:
    """Whether --loss reads pairwise rows (everything but KTO)."""
    return loss in PAIR_LOSSES or loss in REFERENCE_FREE_LOSSES


@dataclass
class Item:
    """A tokenised example and, when precomputed, its reference log-probs (nats, summed over
    the response): (chosen, rejected) for a `PairExample`, (completion, mismatched partner) for
    an `UnpairedExample`."""

    example: PairExample | UnpairedExample
    ref_logps: tuple[float, float] | None = None


class DPOTrainer:
    """Owns the optimiser, the reference and the loss chosen by config.loss (DPO, IPO or KTO);
    `prepare` turns tokenised examples into Items, `step` takes one optimiser batch of them."""

    def __init__(self, policy, tokenizer, config: DPOConfig, total_steps: int, reference=None,
                 compute_dtype: torch.dtype = torch.float32, logger: Callable[[dict], None] | None = None):
        self.policy = policy
        self.tokenizer = tokenizer
        self.cfg = config
        self.compute_dtype = compute_dtype
        self.logger = logger
        self.device = next(policy.parameters()).device
        self.pad_id = pad_token_id(tokenizer)
        self.reference_free = config.loss in REFERENCE_FREE_LOSSES
        if reference is None and not is_lora(policy) and not config.precompute_ref and not self.reference_free:
            reference = frozen_copy(policy)
        self.reference = reference
        for model in (policy, reference):  # same function, fused kernels
            if model is not None:
                fuse_activations(model)
        self.trainable = [p for p in policy.parameters() if p.requires_grad]
        self.dist = current()  # one process, or this process of several (trainers/distributed.py)
        self.dist.broadcast_parameters(self.trainable)
        self.optimizer, self.scheduler = make_optimizer(self.trainable, config, total_steps)
        if self.reference_free:
            self.pair_loss = REFERENCE_FREE_LOSSES[config.loss](config)
            self._micro_loss, self._batch_context = self._reference_free_micro_loss, self._no_context
        elif config.loss in PAIR_LOSSES:
            self.pair_loss = PAIR_LOSSES[config.loss](config)
            per_token = config.loss == "ipo" and config.ipo_logratio == "mean"
            self._pair_loss_extra = self._token_counts if per_token else (lambda items: {})
            self._micro_loss, self._batch_context = self._pair_micro_loss, self._no_context
        else:
            self._micro_loss, self._batch_context = self._kto_micro_loss, self._kto_z0
        self.step_count = 0

    # -- forward passes ---------------------------------------------------------------------
    def _sequence_logps(self, model, prompts: list[list[int]], responses: list[list[int]]) -> torch.Tensor:
        """Σ_t log π(a_t|s_t) of each response after its prompt: (B,) nats."""
        batch = collate_prompt_responses(prompts, responses, self.pad_id, self.device)
        with autocast_context(self.device, self.compute_dtype):
            out = response_forward(model, batch["prompt_ids"], batch["prompt_mask"], batch["response_ids"], batch["response_mask"])
        return out.logprobs.sum(1)

    @staticmethod
    def _rows(examples: Sequence[PairExample | UnpairedExample]) -> tuple[list, list, int]:
        """(prompts, responses, B) of the 2B rows of a micro-batch of B examples: rows 0..B−1
        hold chosen (or the completion), rows B..2B−1 rejected (or the mismatched partner)."""
        prompts = [e.prompt_ids for e in examples]
        if isinstance(examples[0], PairExample):
            second = [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples]
        else:
            second = [e.completion_ids for e in examples] + [e.partner_ids for e in examples]
        return prompts + prompts, second, len(examples)

    @contextlib.contextmanager
    def _reference_model(self):
        if self.reference is None and not is_lora(self.policy):
            # Full fine-tuning with precomputed reference log-probs: until the first step the
            # policy *is* π_ref; afterwards there is nothing left to compute them with.
            if self.step_count > 0:
                raise RuntimeError("reference log-probs were requested after training started, but with "
                                   "precompute_ref and no reference model only the initial policy could give them")
            with torch.no_grad():
                yield self.policy
            return
        with reference_forward(self.policy, self.reference) as model, torch.no_grad():
            yield model

    @torch.no_grad()
    def reference_logps(self, examples: Sequence[PairExample | UnpairedExample]) -> torch.Tensor:
        """Reference log-probs (B, 2): (chosen, rejected) or (completion, partner) per example."""
        was_training = self.policy.training
        self.policy.eval()
        with self._reference_model() as ref_model:
            prompts, responses, b = self._rows(examples)
            logps = self._sequence_logps(ref_model, prompts, responses)
        self.policy.train(was_training)
        return torch.stack([logps[:b], logps[b:]], dim=1)

    def prepare(self, examples: Sequence[PairExample | UnpairedExample]) -> list[Item]:
        """Wrap examples as Items; with precompute_ref, compute their reference log-probs now
        (in micro-batches), so training runs no reference forward pass."""
        items = [Item(e) for e in examples]
        if self.cfg.precompute_ref and not self.reference_free:
            for start in range(0, len(items), self.cfg.micro_batch_size):
                chunk = items[start : start + self.cfg.micro_batch_size]
                table = self.reference_logps([it.example for it in chunk])
                for it, row in zip(chunk, table.tolist()):
                    it.ref_logps = (row[0], row[1])
        return items

    def _ref_table(self, items: Sequence[Item]) -> torch.Tensor:
        """(B, 2) reference log-probs: precomputed, or computed live now."""
        if all(it.ref_logps is not None for it in items):
            return torch.tensor([it.ref_logps for it in items], dtype=torch.float32, device=self.device)
        size = self.cfg.micro_batch_size
        return torch.cat([self.reference_logps([it.example for it in items[i : i + size]]) for i in range(0, len(items), size)])

    # -- losses -----------------------------------------------------------------------------
    def _no_context(self, items: Sequence[Item]) -> None:
        return None

    @torch.no_grad()
    def _kto_z0(self, items: Sequence[Item]) -> torch.Tensor:
        """KTO's z₀ over the whole optimiser batch (so accumulation does not change it): the
        clamped mean log-ratio of each prompt with its mismatched partner completion."""
        policy_logps = []
        for start in range(0, len(items), self.cfg.micro_batch_size):
            chunk = [it.example for it in items[start : start + self.cfg.micro_batch_size]]
            policy_logps.append(self._sequence_logps(self.policy, [e.prompt_ids for e in chunk], [e.partner_ids for e in chunk]))
        return kto_kl_estimate(torch.cat(policy_logps), self._ref_table(items)[:, 1])

    def _pair_logps(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Policy (with grad) and reference log-probs of chosen and rejected: four (B,) tensors."""
        prompts, responses, b = self._rows([it.example for it in items])
        logps = self._sequence_logps(self.policy, prompts, responses)  # (2B,)
        ref = self._ref_table(items)
        return logps[:b], logps[b:], ref[:, 0], ref[:, 1]

    def _token_counts(self, items: Sequence[Item]) -> dict[str, torch.Tensor]:
        """Token counts (B,) of the chosen and rejected completions (EOS included)."""
        def count(ids):
            return torch.tensor(ids, dtype=torch.float32, device=self.device)
        return {"chosen_tokens": count([len(it.example.chosen_ids) for it in items]),
                "rejected_tokens": count([len(it.example.rejected_ids) for it in items])}

    def _pair_micro_loss(self, items: Sequence[Item], context: None,
                         loss_fn: Callable | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        policy_chosen, policy_rejected, ref_chosen, ref_rejected = self._pair_logps(items)
        label = torch.tensor([it.example.label for it in items], dtype=torch.float32, device=self.device)
        extra = {} if loss_fn is not None else self._pair_loss_extra(items)
        loss, stats = (loss_fn or self.pair_loss)(policy_chosen, policy_rejected, ref_chosen, ref_rejected, label=label,
                                                  **extra)
        with torch.no_grad():
            stats["logps/chosen"] = policy_chosen.mean()
            stats["logps/rejected"] = policy_rejected.mean()
            # Not a KL estimate under π (the responses come from the data, not from π), but it
            # grows with the policy's distance from the reference on the data.
            stats["kl_proxy/seq_logratio"] = torch.cat([policy_chosen - ref_chosen, policy_rejected - ref_rejected]).mean()
        return loss, stats

    def _reference_free_micro_loss(self, items: Sequence[Item], context: None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """ORPO / SimPO / CPO on a micro-batch: the policy's log-probs alone (one forward over 2B rows)."""
        prompts, responses, b = self._rows([it.example for it in items])
        logps = self._sequence_logps(self.policy, prompts, responses)  # (2B,)
        label = torch.tensor([it.example.label for it in items], dtype=torch.float32, device=self.device)
        loss, stats = self.pair_loss(logps[:b], logps[b:], label=label, **self._token_counts(items))
        with torch.no_grad():
            stats["logps/chosen"] = logps[:b].mean()
            stats["logps/rejected"] = logps[b:].mean()
        return loss, stats

    def _kto_micro_loss(self, items: Sequence[Item], z0: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        examples = [it.example for it in items]
        policy_logps = self._sequence_logps(self.policy, [e.prompt_ids for e in examples], [e.completion_ids for e in examples])
        ref_logps = self._ref_table(items)[:, 0]
        desirable = torch.tensor([e.desirable for e in examples], device=self.device)
        loss, stats = kto_loss(policy_logps, ref_logps, desirable, z0, self.cfg.beta,
                               self.cfg.desirable_weight, self.cfg.undesirable_weight)
        with torch.no_grad():
            stats["logps/completion"] = policy_logps.mean()
            stats["kl_proxy/seq_logratio"] = (policy_logps - ref_logps).mean()
        return loss, stats

    # -- the loop ---------------------------------------------------------------------------
    def step(self, items: Sequence[Item]) -> dict[str, float]:
        """One optimiser step: the batch mean of the loss, accumulated over micro-batches
        (each micro-batch's mean weighted by its share of the batch)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        # Dropout off: with it, π and π_ref would differ before any update (as in TRL's DPO).
        self.policy.eval()
        context = self._batch_context(items)
        self.optimizer.zero_grad(set_to_none=True)
        parts = []
        local = self.dist.shard(items)  # this process's rows; weights stay shares of the global batch
        for start in range(0, len(local), cfg.micro_batch_size):
            micro = local[start : start + cfg.micro_batch_size]
            weight = len(micro) / len(items)
            loss, stats = self._micro_loss(micro, context)
            check_finite(f"{cfg.loss.upper()} loss", loss.detach(), self.step_count)
            (loss * weight).backward()
            parts.append((weight, {"loss": loss.detach(), **stats}))
        grad_norm = clipped_step(self.trainable, self.optimizer, self.scheduler, cfg.max_grad_norm, self.dist,
                                 self.step_count)
        stats = {"step": self.step_count, **self.dist.sum_dict(mean_stats(parts)), "grad_norm": grad_norm,
                 "learning_rate": self.scheduler.get_last_lr()[0], "time/step": time.perf_counter() - t0}
        self.step_count += 1
        if self.logger is not None:
            self.logger({"stage": cfg.loss, **stats})
        return stats

    @torch.no_grad()
    def evaluate(self, items: Sequence[Item]) -> dict[str, float]:
        """Metrics on held-out Items. Pairs: implicit-reward accuracy and margins (for any loss)
        and the loss (under KTO: the DPO loss, as "dpo_loss"); unpaired (KTO): the loss, rewards
        and z₀ of the set."""
        self.policy.eval()
        kto_on_pairs = isinstance(items[0].example, PairExample) and not trains_on_pairs(self.cfg.loss)
        if kto_on_pairs:
            micro_loss = partial(self._pair_micro_loss, loss_fn=partial(dpo_loss, beta=self.cfg.beta))
            context = None
        else:
            micro_loss, context = self._micro_loss, self._batch_context(items)
        parts = []
        for start in range(0, len(items), self.cfg.micro_batch_size):
            micro = items[start : start + self.cfg.micro_batch_size]
            loss, stats = micro_loss(micro, context)
            parts.append((len(micro) / len(items), {("dpo_loss" if kto_on_pairs else "loss"): loss, **stats}))
        return mean_stats(parts)

    def train(self, train_items: Sequence[Item], eval_items: Sequence[Item] = (), progress: bool = True,
              **checkpointing) -> tuple[list[dict], list[dict]]:
        """Run the configured epochs / max_steps. checkpointing: run_loop's checkpointer, resumed and extra."""
        def postfix(s):
            shown = {"loss": f"{s['loss']:.3f}", "margin": f"{s['rewards/margin']:+.3f}"}
            if "rewards/accuracy" in s:
                shown["acc"] = f"{s['rewards/accuracy']:.2f}"
            return shown

        return run_loop(self, train_items, eval_items, self.cfg, progress, desc=self.cfg.loss.upper(), postfix=postfix,
                        **checkpointing)


# ---------------------------------------------------------------------------------------------


def _examples(tokenizer, data: Sequence[Any], config: DPOConfig, pairs_only: bool = False) -> tuple[list, dict[str, int]]:
    """Tokenised examples for the configured loss: PairExamples for DPO/IPO (and for evaluating
    KTO on pairs when `pairs_only`), UnpairedExamples for KTO."""
    chat = CHAT[config.chat]
    limits = dict(max_prompt_tokens=config.max_prompt_tokens, max_response_tokens=config.max_response_tokens)
    records = list(data)
    if not records:
        raise DataError("no examples: pass at least one record")
    kinds = {type(r) for r in records}
    if len(kinds) != 1:
        raise DataError(f"data must hold one kind of record, got {sorted(k.__name__ for k in kinds)}")
    kind = kinds.pop()
    if trains_on_pairs(config.loss) or pairs_only:
        if kind is not PairwiseRecord:
            raise DataError(f"--loss {config.loss} trains on pairwise rows (prompt, chosen, rejected); got {kind.__name__}. "
                             "Thumbs data work with --loss kto")
        return tokenize_pairs(tokenizer, records, chat, **limits), {"pairs": len(records)}
    counts: dict[str, int] = {}
    if kind is PairwiseRecord:
        texts, counts["ties_left_out"] = unpaired_from_pairwise(records)
    elif kind is ThumbsRecord:
        texts = unpaired_from_thumbs(records)
    elif kind is UnpairedText:
        texts = records
    else:
        raise DataError(f"KTO trains on pairwise or thumbs rows, got {kind.__name__}")
    if not texts:
        raise DataError("no KTO examples: every pair was a tie (label 0.5)")
    counts["desirable"] = sum(t.desirable for t in texts)
    counts["undesirable"] = len(texts) - counts["desirable"]
    return tokenize_unpaired(tokenizer, texts, chat, seed=config.seed, **limits), counts


def train_dpo(policy, tokenizer, data: Sequence[PairwiseRecord | ThumbsRecord | UnpairedText], config: DPOConfig,
              reference=None, eval_data: Sequence[PairwiseRecord | ThumbsRecord | UnpairedText] = (),
              logger: Callable[[dict], None] | None = None, progress: bool = True,
              compute_dtype: torch.dtype = torch.float32, checkpointer: Checkpointer | None = None,
              resume: bool = False) -> dict:
    """Train `policy` on preferences with config.loss (dpo, ipo or kto) against `reference`.

    data: PairwiseRecords (any loss; soft labels honoured by DPO and IPO, KTO maps chosen →
    desirable), or for KTO ThumbsRecords / UnpairedTexts. reference: a frozen model; None means
    the initial policy (the adapter-disabled base with LoRA). With config.lora and a policy that
    is not a LoRA model yet, an adapter is added first. Returns a dict: the trained model under
    "policy" (the peft model with LoRA), "steps", "data" counts, "train" (first/last step
    stats), "eval" (before/after metrics, or None), "history" and "eval_history".
    checkpointer: where to checkpoint (every checkpointer.every steps and at the end; the
    reference log-probs go with each checkpoint); resume: continue from its latest checkpoint.
    """
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    policy = prepare_policy(policy, config)
    if reference is not None:
        reference.eval()
        for p in reference.parameters():
            p.requires_grad_(False)
    train_examples, counts = _examples(tokenizer, data, config)
    eval_examples, eval_counts = [], {}
    if eval_data:
        pairs_only = config.loss == "kto" and isinstance(next(iter(eval_data)), PairwiseRecord)
        eval_examples, eval_counts = _examples(tokenizer, eval_data, config, pairs_only=pairs_only)
    trainer = DPOTrainer(policy, tokenizer, config, total_steps(len(train_examples), config), reference, compute_dtype, logger)
    resumed = resume_offline(trainer, checkpointer, resume)
    if resumed:  # the reference log-probs computed before the first step (the policy has moved since)
        saved = resumed["extra"]
        train_items = [Item(e, r) for e, r in zip(train_examples, saved["train_ref"])]
        eval_items = [Item(e, r) for e, r in zip(eval_examples, saved["eval_ref"])]
        before = saved["before"]
    else:
        # reference log-probs: all of them now, while the policy still equals π_ref
        train_items = trainer.prepare(train_examples)
        eval_items = trainer.prepare(eval_examples) if eval_examples else []
        before = trainer.evaluate(eval_items) if eval_items else None
        if before and logger:
            logger({"stage": f"{config.loss}_eval", "step": 0, **{f"eval/{k}": v for k, v in before.items()}})
    extra = {"before": before, "train_ref": [it.ref_logps for it in train_items], "eval_ref": [it.ref_logps for it in eval_items]}
    history, evals = trainer.train(train_items, eval_items, progress, checkpointer=checkpointer, resumed=resumed, extra=extra)
    return {
        "policy": policy,
        "steps": trainer.step_count,
        "data": {"train": counts, "eval": eval_counts},
        "train": {"first": history[0], "last": history[-1]},
        "eval": {"before": before, "after": {k: v for k, v in evals[-1].items() if k != "step"}} if eval_items else None,
        "history": history,
        "eval_history": evals,
    }


