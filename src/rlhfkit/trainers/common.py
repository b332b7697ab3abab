"""Pieces every trainer shares: stopping on NaN/inf before weights are touched."""

from __future__ import annotations

import torch


class NonFiniteError(FloatingPointError):
    """A reward, loss or gradient became NaN/inf; training stops before touching the weights."""


def check_finite(name: str, tensor: torch.Tensor, step: int) -> None:
    """Raise NonFiniteError naming the step, the quantity and the first bad index."""
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).nonzero()[0].tolist()
        raise NonFiniteError(
            f"step {step}: {name} is not finite at index {bad} (value {tensor[tuple(bad)].item()}); "
            "stopping before the weights are updated — check the reward function / lower the learning rate"
        )
