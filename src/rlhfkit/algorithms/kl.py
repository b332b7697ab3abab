"""Per-token KL estimators and KL-coefficient controllers (REFERENCES.md, "KL").

With samples a ~ π and lr = log π_ref(a) − log π(a):
  k1 = −lr              unbiased for KL(π‖π_ref), can be negative
  k2 = ½·lr²            biased, low variance
  k3 = exp(lr) − 1 − lr unbiased, always ≥ 0
All in nats, same shape as the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    return logprobs - ref_logprobs


def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    return 0.5 * (ref_logprobs - logprobs) ** 2


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    lr = ref_logprobs - logprobs
    return torch.expm1(lr) - lr


@dataclass
class FixedKLController:
    """β stays where it starts. `value` is the live KL coefficient (`kl_coef` in the trainer)."""

    value: float

    def update(self, observed_kl: float, n_steps: int) -> float:
        return self.value


@dataclass
class AdaptiveKLController:
    """Ziegler et al. 2019: e = clip(KL/target − 1, −0.2, 0.2); β ← β·(1 + e·n_steps/horizon).

    `observed_kl` is the mean per-sequence KL (nats) of the last batch, `n_steps` the number of
    samples (sequences) it came from. `value` is the live KL coefficient β (`kl_coef` in the
    trainer, `kl/coef` in the logs).
    """

    value: float
    target: float
    horizon: float

    def update(self, observed_kl: float, n_steps: int) -> float:
        error = min(max(observed_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


def make_kl_controller(kl_coef: float, target: float | None, horizon: float) -> FixedKLController | AdaptiveKLController:
    """A controller whose `value` starts at `kl_coef`: adaptive when a target KL is given, fixed otherwise."""
    if target is None:
        return FixedKLController(kl_coef)
    return AdaptiveKLController(kl_coef, target, horizon)
