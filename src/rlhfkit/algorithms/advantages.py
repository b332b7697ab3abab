"""Advantage estimators."""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over right-padded sequences.

    δ_t = r_t + γ·V(s_{t+1}) − V(s_t),   Â_t = Σ_l (γλ)^l δ_{t+l},
    with V = 0 after the last real token (the episode ends there).
    rewards, values, mask: (B, T). Returns (advantages, returns = Â + V), both (B, T), 0 on padding.
    One backward sweep over T, vectorised across B.
    """
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_adv = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        advantages[:, t] = adv_t * m
        # Padding positions pass through the state of the next real step unchanged (there is none
        # after the end), so the sweep restarts cleanly at each sequence's last real token.
        next_value = torch.where(m > 0, values[:, t], next_value)
        next_adv = torch.where(m > 0, adv_t, next_adv)
    returns = (advantages + values) * mask
    return advantages, returns


def gae_reference_loop(
    rewards: list[float], values: list[float], gamma: float = 1.0, lam: float = 0.95
) -> list[float]:
    """GAE for one unpadded episode written straight from the definition (sum over l), O(T²).

    Kept as the independent reference the vectorised `gae` is tested against.
    """
    T = len(rewards)
    v = list(values) + [0.0]
    deltas = [rewards[t] + gamma * v[t + 1] - v[t] for t in range(T)]
    return [sum((gamma * lam) ** l * deltas[t + l] for l in range(T - t)) for t in range(T)]


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = Σ_{t' ≥ t} γ^{t'−t} r_{t'} over right-padded (B, T) rewards (0 on padding)."""
    B, T = rewards.shape
    out = torch.zeros_like(rewards)
    running = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        running = rewards[:, t] * mask[:, t] + gamma * running
        out[:, t] = running * mask[:, t]
    return out


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out baseline (Ahmadian et al. 2024): A_i = R_i − mean_{j≠i} R_j within each group.

    rewards: (B,) with B = n_prompts·G, the G samples of a prompt adjacent. Returns (B,).
    Uses the identity A_i = G/(G−1)·(R_i − mean_j R_j).
    """
    if group_size < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt")
    grouped = rewards.view(-1, group_size)  # (n, G)
    return (group_size / (group_size - 1) * (grouped - grouped.mean(1, keepdim=True))).view(-1)


def group_normalized_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al. 2024): A_i = (r_i − mean(r)) / (std(r) + ε) within each group of G.

    rewards: (B,) with the G samples of a prompt adjacent. std is the sample (Bessel) standard
    deviation. Returns (B,); a group whose rewards are all equal gets 0.
    """
    if group_size < 2:
        raise ValueError("group normalisation needs at least 2 samples per prompt")
    grouped = rewards.view(-1, group_size)
    return ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + eps)).view(-1)
