"""On-policy distillation (GKD; Agarwal et al. 2024, "On-policy distillation of language models:
learning from self-generated mistakes"): the student's token distributions pulled towards the
teacher's by the generalised Jensen–Shannon divergence, on the student's own samples or on
dataset completions. Pure tensors; imports torch only.

    JSD(β)(T‖S) = β·KL(T ‖ M) + (1 − β)·KL(S ‖ M),   M = β·T + (1 − β)·S

with T the teacher's and S the student's next-token distribution (the paper's §3, P = teacher,
Q = student). As β → 0 it behaves like β·KL(T‖S), the forward KL of supervised distillation, and
as β → 1 like (1 − β)·KL(S‖T), the reverse (mode-seeking) KL; at exactly β = 0 and β = 1 the
divergence itself vanishes, so there the loss is the limit's KL itself, as TRL's GKDTrainer does:
β = 0 forward KL(T‖S), β = 1 reverse KL(S‖T).

Shapes: B sequences, T positions, V vocabulary.
"""

from __future__ import annotations

import math

import torch


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) = Σ_v p_v (log p_v − log q_v) over the last dimension (nats); log-softmax keeps
    every log p finite, so no 0·log 0 case arises."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float,
                    temperature: float = 1.0) -> torch.Tensor:
    """(..., V) logits of student and teacher -> (...) JSD(β) per position (nats), both
    distributions softmax(logits / temperature). β = 0: KL(T‖S); β = 1: KL(S‖T)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    log_s = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if beta == 0.0:
        return _kl(log_t, log_s)
    if beta == 1.0:
        return _kl(log_s, log_t)
    log_m = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log(1.0 - beta)]), dim=0)
    return beta * _kl(log_t, log_m) + (1.0 - beta) * _kl(log_s, log_m)


def generalized_jsd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                         beta: float, temperature: float = 1.0,
                         num_tokens: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Σ over masked positions of JSD(β), divided by `num_tokens` (default: this batch's masked
    positions), so micro-batches of one optimiser batch add up to its token mean.
    student_logits, teacher_logits: (B, T, V), the distributions predicting each position's
    next token; mask: (B, T), 1 where that prediction is trained. Stats: jsd_sum, tokens."""
    per_token = generalized_jsd(student_logits, teacher_logits, beta, temperature)  # (B, T)
    mask = mask.to(per_token.dtype)
    total = (per_token * mask).sum()
    tokens = mask.sum()
    denominator = tokens.clamp(min=1) if num_tokens is None else num_tokens
    return total / denominator, {"jsd_sum": total.detach(), "tokens": tokens}
