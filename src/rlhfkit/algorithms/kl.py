"""Per-token KL estimators and KL-coefficient controllers (REFERENCES.md, "KL").

With samples a ~ π and lr = log π_ref(a) − log π(a):
  k1 = −lr              unbiased for KL(π‖π_ref), can be negative
  k2 = ½·lr²            biased, low variance
  k3 = exp(lr) − 1 − lr unbiased, always ≥ 0
All in nats, same shape as the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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


@dataclass
class PIKLController:
    """Proportional–integral control of log β on the relative KL error, to hold a target KL
    within a short run (Ziegler's controller moves β by at most 0.2·n_steps/horizon per batch,
    so with a horizon of 10 000 it barely moves in 25 steps).

    With KL_t the mean per-sequence KL (nats) of batch t:
        s_t = λ·s_{t−1} + (1 − λ)·(KL_t − KL_{t−1})      (trend per step, s = 0 at the first batch)
        K_t = KL_t + lookahead·s_t                         (the KL the β set now will meet)
        e_t = clip(K_t/target − 1, −1, 1)
        I_t = clip(I_{t−1} + e_t, −I_max, I_max),   I_max = log(max_ratio)/ki
        log β_t = log β_0 + kp·e_t + ki·I_t
    Why a look-ahead: batch t's KL is that of the policy *before* update t, and a β set after
    it first acts in update t+1, whose effect the KL shows at batch t+2; the policy a run ends
    with (the one a held-out evaluation measures) is one update past its last batch. While the
    KL is climbing, the batch figure is behind on both counts, so the controller acts on the KL
    extrapolated `lookahead` steps along its trend (2 by default; 0 is plain PI on the batch KL).
    The integral finds the β at which the policy's drift and the penalty's pull balance at the
    target; the proportional term reacts at once to an overshoot. Two guards against windup:
    the integral starts only once the (look-ahead) KL has first reached `integrate_from`·target
    (a run starts at the reference, KL = 0, and integrating those first steps of e = −1 would
    wind β far down and cause a large overshoot when the policy does move), and the clip on I
    keeps β within [β_0/max_ratio, β_0·max_ratio] from the integral alone.
    `value` is the live β; `n_steps` is ignored (one update per batch whatever its size).
    """

    initial: float
    target: float
    kp: float = 2.0
    ki: float = 0.3
    max_ratio: float = 100.0
    integrate_from: float = 0.5
    lookahead: float = 2.0
    trend_decay: float = 0.5
    integral: float = 0.0
    integrating: bool = False
    previous: float | None = None
    trend: float = 0.0
    value: float = field(init=False)

    def __post_init__(self):
        if self.initial <= 0:
            raise ValueError("the PI controller scales β multiplicatively: the initial KL coefficient must be > 0")
        self.value = self.initial

    def update(self, observed_kl: float, n_steps: int = 1) -> float:
        if self.previous is not None:
            self.trend = self.trend_decay * self.trend + (1.0 - self.trend_decay) * (observed_kl - self.previous)
        self.previous = observed_kl
        ahead = observed_kl + self.lookahead * self.trend
        error = min(max(ahead / self.target - 1.0, -1.0), 1.0)
        self.integrating = self.integrating or ahead >= self.integrate_from * self.target
        if self.integrating:
            limit = math.log(self.max_ratio) / self.ki if self.ki > 0 else 0.0
            self.integral = min(max(self.integral + error, -limit), limit)
        self.value = self.initial * math.exp(self.kp * error + self.ki * self.integral)
        return self.value


KL_CONTROLLERS = ("pi", "ziegler")


def make_kl_controller(kl_coef: float, target: float | None, horizon: float, kind: str = "pi",
                       kp: float = 2.0, ki: float = 0.3,
                       lookahead: float = 2.0) -> FixedKLController | AdaptiveKLController | PIKLController:
    """A controller whose `value` starts at `kl_coef`: with a target KL, the PI controller (`kind`
    "pi", gains kp, ki, `lookahead` steps along the KL's trend) or Ziegler's (`kind` "ziegler",
    `horizon`); without one, fixed."""
    if target is None:
        return FixedKLController(kl_coef)
    if kind == "ziegler":
        return AdaptiveKLController(kl_coef, target, horizon)
    if kind == "pi":
        return PIKLController(kl_coef, target, kp, ki, lookahead=lookahead)
    raise ValueError(f"unknown KL controller {kind!r}; choose from {', '.join(KL_CONTROLLERS)}")
