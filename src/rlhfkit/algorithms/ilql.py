"""ILQL: implicit language Q-learning (Snell et al. 2022, "Offline RL for Natural Language
Generation with Implicit Language Q-Learning"), as pure functions on tensors.

Each response token a_t is an action taken in state s_t (the prompt and the tokens before it).
The reward is the sequence's score on its last real token and 0 elsewhere; the state after the
last token is terminal (V = 0). The pieces, per token t (masked means over real tokens):

    Q target   y_t    = r_t + γ·V(s_{t+1})                        (no gradient through y_t)
    Q loss     L_Q    = Σ_i mean_t (Q_i(s_t, a_t) − y_t)²          (twin Q heads i = 1, 2)
    V loss     L_V    = mean_t |τ − 1[u_t < 0]|·u_t²,  u_t = min_i Q̂_i(s_t, a_t) − V(s_t)
                        (expectile regression against the target heads Q̂, τ = 0.7 as trlx)
    CQL term   L_CQL  = Σ_i mean_t (logsumexp_a Q_i(s_t, a) − Q_i(s_t, a_t))
    AWAC / BC  L_AWAC = mean_t exp(β_awac·(min_i Q̂_i − V)) · (−log π(a_t | s_t))   (weight detached)
    total      L_Q + L_V + cql_scale·L_CQL + awac_scale·L_AWAC

Decoding (paper §4.3): π(a | s) ∝ π_β(a | s)·exp(β·(Q̂(s, a) − V(s))), i.e. the logits
log π_β + β·(Q̂ − V), optionally cut to their top k. The target heads follow the online ones by
Polyak averaging, Q̂ ← α·Q + (1 − α)·Q̂.

Shapes: B sequences, T response tokens, V vocabulary. Imports torch only.
"""

from __future__ import annotations

from typing import Sequence

import torch

# A finite "minus infinity" for logits outside the top k: exp() of it is exactly 0, and a token's
# log-prob taken there and multiplied by a 0 padding mask stays 0 (−inf · 0 would be NaN).
EXCLUDED_LOGIT = -1e9


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """Elementwise expectile loss |τ − 1[diff < 0]|·diff², diff = target − prediction.

    τ > 0.5 weighs under-estimates (diff > 0) more, so the fitted V sits near an upper expectile
    of Q over the data's actions (IQL, Kostrikov et al. 2021; ILQL Eq. 3)."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return weight * diff.pow(2)


def terminal_rewards(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) sequence scores placed on each row's last real token: (B, T), 0 elsewhere."""
    last = (mask.sum(1).long() - 1).clamp(min=0)  # (B,)
    rewards = torch.zeros_like(mask, dtype=scores.dtype)
    rewards[torch.arange(mask.shape[0], device=mask.device), last] = scores
    return rewards * mask


def q_targets(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """y_t = r_t + γ·V(s_{t+1}), with V = 0 after the last real token (terminal). (B, T), detached.

    rewards, values, mask: (B, T); values[:, t] = V(s_t), the state before token t."""
    next_values = torch.zeros_like(values)
    next_values[:, :-1] = values[:, 1:] * mask[:, 1:]  # (B, T): V(s_{t+1}), 0 past the end
    return (rewards + gamma * next_values).detach() * mask


def cql_term(q_all: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of logsumexp_a Q(s_t, a) − Q(s_t, a_t): the cross-entropy of a softmax over
    the Q values against the data's action (CQL, Kumar et al. 2020; ILQL Eq. 5).
    q_all: (B, T, V); actions: (B, T) long; mask: (B, T)."""
    taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return _masked_mean(torch.logsumexp(q_all.float(), dim=-1) - taken, mask)


def ilql_loss(q_all: Sequence[torch.Tensor], target_q_taken: Sequence[torch.Tensor], values: torch.Tensor,
              action_logprobs: torch.Tensor, actions: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor,
              gamma: float = 0.99, tau: float = 0.7, cql_scale: float = 0.1, awac_scale: float = 1.0,
              awac_beta: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The ILQL loss of one batch (module docstring).

    q_all: one (B, T, V) tensor per online Q head; target_q_taken: one (B, T) tensor per target
    head, Q̂_i(s_t, a_t) of the data's actions (all the loss reads of them); values: (B, T) V(s_t);
    action_logprobs: (B, T) log π(a_t | s_t) of the LM; actions: (B, T) long; scores: (B,);
    mask: (B, T) float, 1 on real response tokens. Returns (loss, stats)."""
    mask = mask.float()
    rewards = terminal_rewards(scores.float(), mask)
    target = q_targets(rewards, values.float(), mask, gamma)
    taken = [q.float().gather(-1, actions.unsqueeze(-1)).squeeze(-1) for q in q_all]  # each (B, T)
    target_taken = torch.stack([q.detach().float() for q in target_q_taken]).min(0).values  # (B, T)
    loss_q = sum(_masked_mean((q - target).pow(2), mask) for q in taken)
    advantage = target_taken - values.float()  # (B, T), grad flows into V only
    loss_v = _masked_mean(expectile_loss(advantage, tau), mask)
    loss_cql = sum(cql_term(q, actions, mask) for q in q_all)
    awac_weight = torch.exp(awac_beta * advantage.detach())
    loss_awac = _masked_mean(awac_weight * -action_logprobs.float(), mask)
    loss = loss_q + loss_v + cql_scale * loss_cql + awac_scale * loss_awac
    stats = {"loss": loss.detach(), "loss/q": loss_q.detach(), "loss/v": loss_v.detach(), "loss/cql": loss_cql.detach(),
             "loss/awac": loss_awac.detach(), "values/mean": _masked_mean(values.detach().float(), mask),
             "q/mean": _masked_mean(taken[0].detach(), mask), "advantage/mean": _masked_mean(advantage.detach(), mask)}
    return loss, stats


@torch.no_grad()
def polyak_update(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], alpha: float) -> None:
    """In place: each target tensor ← α·online + (1 − α)·target (α = 1 copies)."""
    for t, o in zip(target, online):
        t.mul_(1.0 - alpha).add_(o.detach().to(t.dtype), alpha=alpha)


def perturbed_logits(logits: torch.Tensor, q: torch.Tensor, v: torch.Tensor, beta: float, top_k: int = 0) -> torch.Tensor:
    """ILQL's decoding logits log π_β(a|s) + β·(Q(s, a) − V(s)); with top_k > 0 every token
    outside the k largest is set to EXCLUDED_LOGIT. logits, q: (..., V); v: (...). Float32."""
    out = torch.log_softmax(logits.float(), dim=-1) + beta * (q.float() - v.float().unsqueeze(-1))
    if 0 < top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, EXCLUDED_LOGIT)
    return out
