"""Reference-free preference losses: ORPO, SimPO, CPO — no π_ref, so no reference model at all.

Pure tensors in, (scalar loss, stats dict) out. Every function takes each completion's *summed*
log-prob log π(y|x) (B,) in nats and its token count |y| (B,) (EOS included), and an optional
label μ (B,) = P(chosen ≻ rejected) (default 1; for μ < 1 the preference term takes the
label-smoothed form −[μ·log σ(z) + (1 − μ)·log σ(−z)], as DPO's does).

- ORPO (Hong, Lee, Thorne 2024, eq. 2–7): with P(y|x) = exp(log π(y|x)/|y|) the per-token
  geometric-mean likelihood and odds(y) = P/(1 − P),
  L = L_SFT + λ·L_OR,  L_SFT = −log π(y_w|x)/|y_w|,  L_OR = −log σ(log odds(y_w) − log odds(y_l)),
  λ = 0.1 (TRL's ORPOConfig `beta`, the paper's λ on its larger models).
- SimPO (Meng, Xia, Chen 2024, eq. 6): reward r(y) = (β/|y|)·log π(y|x), target margin γ,
  L = −log σ(r(y_w) − r(y_l) − γ) = −log σ(β·(avg_w − avg_l − γ/β)); β = 2.0, γ/β = 0.5 (the
  authors' Llama-3-Base configuration: β 2, γ 1; their code's dataclass default is γ/β = 0.25).
- CPO (Xu et al. 2024, eq. 3–4): DPO with π_ref dropped (a uniform reference) plus the NLL of the
  preferred response, L = −log σ(β·(log π(y_w) − log π(y_l))) + α·(−log π(y_w|x)/|y_w|), β = 0.1,
  α = 1 (TRL's `cpo_alpha`; like TRL, the NLL is averaged over the completion's tokens).

For soft labels the SFT / NLL term of ORPO and CPO is μ·NLL(y_w) + (1 − μ)·NLL(y_l): the expected
NLL of the preferred response (hard labels: the papers' NLL on the chosen one).

Logged implicit rewards ("rewards/chosen", "rewards/rejected", "rewards/margin",
"rewards/accuracy"): what each method compares — λ·avg log-prob for ORPO, β·avg for SimPO,
β·summed log-prob for CPO.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _soft_preference(z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """−[μ·log σ(z) + (1 − μ)·log σ(−z)] per pair, (B,)."""
    return -(label * F.logsigmoid(z) + (1 - label) * F.logsigmoid(-z))


def _label(label: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(like) if label is None else label.to(like.dtype)


def _reward_stats(chosen_reward: torch.Tensor, rejected_reward: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean rewards of both sides, their margin, and the fraction of decided pairs (μ ≠ ½) whose
    preferred side has the higher reward."""
    with torch.no_grad():
        margin = chosen_reward - rejected_reward
        decided = label != 0.5
        correct = ((margin > 0) == (label > 0.5)) & decided
        return {"rewards/chosen": chosen_reward.mean(), "rewards/rejected": rejected_reward.mean(),
                "rewards/margin": margin.mean(),
                "rewards/accuracy": correct.float().sum() / decided.float().sum().clamp(min=1)}


def log_odds(mean_logprob: torch.Tensor) -> torch.Tensor:
    """log(P/(1 − P)) for P = exp(mean_logprob) ≤ 1: mean_logprob − log(1 − exp(mean_logprob)),
    with log(1 − e^a) taken as log(−expm1(a)) (accurate for a near 0) and a clamped below 0 so
    that a completion the model is certain of gives a large finite value, not inf."""
    a = mean_logprob.clamp(max=-1e-6)
    return a - torch.log(-torch.expm1(a))


def orpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
              chosen_tokens: torch.Tensor, rejected_tokens: torch.Tensor, lam: float = 0.1,
              label: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """ORPO: the SFT NLL (per-token mean) plus λ times the odds-ratio loss, averaged over the batch.
    Inputs (B,): summed log-probs (nats) and token counts. Stats add "loss/nll", "loss/odds_ratio"
    and "orpo/log_odds_ratio" (log odds(y_w) − log odds(y_l), mean)."""
    mu = _label(label, policy_chosen_logps)
    avg_chosen, avg_rejected = policy_chosen_logps / chosen_tokens, policy_rejected_logps / rejected_tokens
    ratio = log_odds(avg_chosen) - log_odds(avg_rejected)  # (B,)
    odds_ratio_loss = _soft_preference(ratio, mu)
    nll = -(mu * avg_chosen + (1 - mu) * avg_rejected)
    loss = (nll + lam * odds_ratio_loss).mean()
    stats = _reward_stats(lam * avg_chosen, lam * avg_rejected, mu)
    stats.update({"loss/nll": nll.mean().detach(), "loss/odds_ratio": odds_ratio_loss.mean().detach(),
                  "orpo/log_odds_ratio": ratio.mean().detach()})
    return loss, stats


def simpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
               chosen_tokens: torch.Tensor, rejected_tokens: torch.Tensor, beta: float = 2.0,
               gamma_beta_ratio: float = 0.5, label: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SimPO: −log σ(β·(avg_w − avg_l) − γ), γ = gamma_beta_ratio·β, averaged over the batch.
    Inputs (B,): summed log-probs (nats) and token counts."""
    mu = _label(label, policy_chosen_logps)
    reward_chosen = beta * policy_chosen_logps / chosen_tokens
    reward_rejected = beta * policy_rejected_logps / rejected_tokens
    losses = _soft_preference(reward_chosen - reward_rejected - gamma_beta_ratio * beta, mu)
    return losses.mean(), _reward_stats(reward_chosen, reward_rejected, mu)


def cpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             chosen_tokens: torch.Tensor, rejected_tokens: torch.Tensor, beta: float = 0.1,
             alpha: float = 1.0, label: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CPO: −log σ(β·(log π(y_w) − log π(y_l))) on summed log-probs, plus α times the per-token NLL
    of the preferred response, averaged over the batch. Inputs (B,): summed log-probs (nats) and
    token counts. Stats add "loss/nll" and "loss/preference"."""
    mu = _label(label, policy_chosen_logps)
    preference = _soft_preference(beta * (policy_chosen_logps - policy_rejected_logps), mu)
    nll = -(mu * policy_chosen_logps / chosen_tokens + (1 - mu) * policy_rejected_logps / rejected_tokens)
    loss = (preference + alpha * nll).mean()
    stats = _reward_stats(beta * policy_chosen_logps, beta * policy_rejected_logps, mu)
    stats.update({"loss/nll": nll.mean().detach(), "loss/preference": preference.mean().detach()})
    return loss, stats
