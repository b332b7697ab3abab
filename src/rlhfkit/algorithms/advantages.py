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
