"""Offline losses: SFT cross-entropy and the direct preference methods DPO, IPO and KTO.

Pure tensors in, (scalar loss, stats dict) out; imports torch and rlhfkit.algorithms only.
Formulas: REFERENCES.md, "Direct preference methods". Shapes: B batch, L tokens, V vocab.

Every preference loss takes *sequence* log-probs: the sum over a completion's tokens of
log π(a_t | s_t) in nats, shape (B,). With h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) −
log π_ref(y_l)) the log-ratio difference of a pair, the implicit reward of a completion is
β·log(π(y|x)/π_ref(y|x)) (Rafailov et al. 2023, §5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhfkit.algorithms.logprobs import selected_token_logprobs


def sft_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor, num_tokens: float | torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Next-token cross-entropy on the tokens marked in `loss_mask`.

    logits: (B, L, V), logits[:, i] the model's scores for token i+1; input_ids: (B, L) long;
    loss_mask: (B, L), 1 on the tokens of `input_ids` whose prediction is trained (the first
    token is never predicted, so loss_mask[:, 0] is ignored).
    Returns −Σ mask·log p(token) / num_tokens in nats per token; `num_tokens` defaults to the
    masked count here — pass the count of a whole accumulated batch so that micro-batch losses
    add up to the full batch's token mean. Stats: "nll_sum" (nats) and "tokens" (count).
    """
    token_logprobs = selected_token_logprobs(logits[:, :-1], input_ids[:, 1:])  # (B, L−1)
    mask = loss_mask[:, 1:].to(token_logprobs.dtype)
    nll_sum = -(token_logprobs * mask).sum()
    tokens = mask.sum()
    denominator = tokens.clamp(min=1) if num_tokens is None else num_tokens
    return nll_sum / denominator, {"nll_sum": nll_sum.detach(), "tokens": tokens.detach()}


def _log_ratio_difference(policy_chosen, policy_rejected, ref_chosen, ref_rejected):
    chosen_logratio = policy_chosen - ref_chosen  # (B,)
    rejected_logratio = policy_rejected - ref_rejected
    return chosen_logratio - rejected_logratio, chosen_logratio, rejected_logratio


def _pair_stats(chosen_logratio, rejected_logratio, label, beta) -> dict[str, torch.Tensor]:
    """Implicit rewards β·log(π/π_ref) of both sides, their margin, and the accuracy: the
    fraction of pairs whose preferred side (label > ½) has the higher implicit reward (ties
    skipped; for hard labels, chosen > rejected)."""
    with torch.no_grad():
        chosen_reward = beta * chosen_logratio
        rejected_reward = beta * rejected_logratio
        margin = chosen_reward - rejected_reward
        decided = label != 0.5
        correct = ((margin > 0) == (label > 0.5)) & decided
        return {
            "rewards/chosen": chosen_reward.mean(),
            "rewards/rejected": rejected_reward.mean(),
            "rewards/margin": margin.mean(),
            "rewards/accuracy": correct.float().sum() / decided.float().sum().clamp(min=1),
        }


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO (Rafailov et al. 2023): L = −log σ(β·h), averaged over the batch.

    All log-probs (B,) summed over completion tokens, nats. `label` μ (B,): the probability
    that chosen is preferred (default 1). For μ < 1 the conservative / label-smoothed form
    L = −[μ·log σ(βh) + (1 − μ)·log σ(−βh)] (Mitchell 2023, "cDPO"), the Bradley–Terry loss
    with a soft label; ties (μ = ½) pull h to 0.
    """
    h, chosen_logratio, rejected_logratio = _log_ratio_difference(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    if label is None:
        label = torch.ones_like(h)
    losses = -(label * F.logsigmoid(beta * h) + (1 - label) * F.logsigmoid(-beta * h))  # (B,)
    return losses.mean(), _pair_stats(chosen_logratio, rejected_logratio, label, beta)


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    tau: float = 0.1,
    label: torch.Tensor | None = None,
    beta: float = 0.1,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IPO (Azar et al. 2023): L = (h − 1/(2τ))², averaged over the batch; h is β-free.

    With a label μ (B,) (default 1) the target is (μ − ½)/τ = (2μ − 1)/(2τ), the minimiser of
    IPO's population loss; this equals μ·(h − 1/(2τ))² + (1 − μ)·(h + 1/(2τ))² up to a constant
    in h, so hard labels give the formula above and ties pull h to 0. `beta` only scales the
    logged implicit rewards.

    `chosen_tokens`, `rejected_tokens` (B,): each completion's token count. When given, each
    side's log-ratio is divided by its own count before h is formed — the per-token averaged form
    that TRL uses after checking with the IPO authors, and that the paper's results correspond to
    (REFERENCES.md, "Direct preference methods"); the logged rewards then use the averages too.
    Without them h is on summed log-ratios, the formula as written.
    """
    if (chosen_tokens is None) != (rejected_tokens is None):
        raise ValueError("pass both chosen_tokens and rejected_tokens, or neither")
    if chosen_tokens is not None:
        policy_chosen_logps, ref_chosen_logps = policy_chosen_logps / chosen_tokens, ref_chosen_logps / chosen_tokens
        policy_rejected_logps = policy_rejected_logps / rejected_tokens
        ref_rejected_logps = ref_rejected_logps / rejected_tokens
    h, chosen_logratio, rejected_logratio = _log_ratio_difference(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps
    )
    if label is None:
        label = torch.ones_like(h)
    target = (2 * label - 1) / (2 * tau)
    losses = (h - target) ** 2
    return losses.mean(), _pair_stats(chosen_logratio, rejected_logratio, label, beta)


def kto_kl_estimate(policy_mismatched_logps: torch.Tensor, ref_mismatched_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z₀: the batch mean of log π(y'|x) − log π_ref(y'|x) over mismatched
    pairs (x with another example's completion y'), clamped at 0 and detached (Ethayarajh et
    al. 2024, §4.2). Inputs (B,) in nats; returns a scalar."""
    return (policy_mismatched_logps - ref_mismatched_logps).mean().clamp(min=0).detach()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl_estimate: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KTO (Ethayarajh et al. 2024) on unpaired examples, averaged over the batch.

    r = log π(y|x) − log π_ref(y|x); desirable v = λ_D·σ(β(r − z₀)), undesirable
    v = λ_U·σ(β(z₀ − r)); loss λ_y − v. policy_logps, ref_logps: (B,) summed over completion
    tokens, nats; desirable: (B,) bool; kl_estimate z₀ ≥ 0 without gradient (`kto_kl_estimate`).
    Stats: mean implicit reward β·r of each kind (0 when the batch has none) and their margin.
    """
    z0 = torch.as_tensor(kl_estimate, dtype=policy_logps.dtype, device=policy_logps.device).detach()
    logratio = policy_logps - ref_logps  # (B,)
    desirable = desirable.bool()
    value = torch.where(
        desirable,
        desirable_weight * torch.sigmoid(beta * (logratio - z0)),
        undesirable_weight * torch.sigmoid(beta * (z0 - logratio)),
    )
    weight = torch.where(desirable, torch.full_like(value, desirable_weight), torch.full_like(value, undesirable_weight))
    loss = (weight - value).mean()
    with torch.no_grad():
        reward = beta * logratio
        n_desirable = desirable.float().sum()
        n_undesirable = (~desirable).float().sum()
        desirable_mean = (reward * desirable).sum() / n_desirable.clamp(min=1)
        undesirable_mean = (reward * ~desirable).sum() / n_undesirable.clamp(min=1)
        stats = {
            "rewards/desirable": desirable_mean,
            "rewards/undesirable": undesirable_mean,
            "rewards/margin": desirable_mean - undesirable_mean,
            "kl/z0": z0,
        }
    return loss, stats
