"""Masked statistics over padded (B, T) tensors, and running moments across batches."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class RunningMoments:
    """Mean and population variance of every value seen so far, one batch at a time.

    Each batch's own moments (count n, mean m, population variance v) are merged into the
    running ones with the parallel update of Chan, Golub & LeVeque (1979):
      N' = N + n,  δ = m − μ,  μ' = μ + δ·n/N',  σ²' = (σ²·N + v·n + δ²·N·n/N') / N'.
    Before the first batch mean = 0 and var = 1 (standardising by them changes nothing).
    """

    mean: float = 0.0
    var: float = 1.0
    count: int = 0

    def update(self, x: torch.Tensor) -> None:
        """Merge the values of `x` (any shape, counted one by one) into the running moments."""
        n, m = x.numel(), float(x.mean())
        var = float(x.var(unbiased=False)) if n > 1 else 0.0
        total = self.count + n
        delta = m - self.mean
        self.var = (self.var * self.count + var * n + delta**2 * self.count * n / total) / total if self.count else var
        self.mean += delta * n / total
        self.count = total
