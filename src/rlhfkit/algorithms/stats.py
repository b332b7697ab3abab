"""Masked statistics over padded (B, T) tensors."""

from __future__ import annotations

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `x` where `mask` is 1. x, mask: same shape."""
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` over the positions where `mask` is 1 (0 if there are none)."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries of `x` (all dims); Bessel-corrected when `unbiased`."""
    mean = masked_mean(x, mask)
    sq = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        sq = sq * n / (n - 1).clamp(min=1)
    return sq


def whiten(x: torch.Tensor, mask: torch.Tensor, zero_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Scale the masked entries of `x` to unit variance; remove their mean too if `zero_mean`.

    `zero_mean=False` keeps the mean (x is scaled around it), which is how PPO implementations
    whiten rewards without moving their sign. Padding positions come back as 0.
    """
    mean = masked_mean(x, mask)
    var = masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not zero_mean:
        out = out + mean
    return out * mask
