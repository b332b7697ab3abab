"""ORPO, SimPO and CPO against values worked out by hand (no reference model in any of them).

ORPO: Hong, Lee, Thorne 2024, eq. 2–7 (P(y|x) = exp(mean token log-prob), odds = P/(1 − P)).
SimPO: Meng, Xia, Chen 2024, eq. 6 (reward β·mean token log-prob, margin γ).
CPO: Xu et al. 2024, eq. 3–4 (DPO without π_ref, plus the NLL of the preferred response).
"""

import math

import pytest
import torch

from rlhfkit.algorithms.reference_free import cpo_loss, log_odds, orpo_loss, simpo_loss

LN2, LN3 = math.log(2.0), math.log(3.0)


def _t(*values, grad=False):
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def test_log_odds_of_known_probabilities():
    # P = ½ → odds 1 → 0; P = 0.2 → odds ¼ → −ln 4; P = 0.8 → odds 4 → ln 4
    got = log_odds(_t(math.log(0.5), math.log(0.2), math.log(0.8)))
    assert got.tolist() == pytest.approx([0.0, -math.log(4), math.log(4)])
    assert torch.isfinite(log_odds(_t(0.0))).all()  # a certain completion: large but finite


def test_orpo_at_known_log_probs():
    # chosen: 2 tokens of P ½ each (summed 2 ln ½): mean ln ½, P = ½, log odds 0.
    # rejected: 3 tokens of P 0.2 (summed 3 ln 0.2): P = 0.2, odds ¼, log odds −ln 4.
    # log odds ratio ln 4, σ(ln 4) = 4/5, L_OR = −ln 0.8 = 0.223144; L_SFT = −ln ½ = 0.693147.
    # λ = 0.1 (the default): L = 0.693147 + 0.0223144 = 0.715461.
    chosen, rejected = _t(2 * math.log(0.5), grad=True), _t(3 * math.log(0.2), grad=True)
    loss, stats = orpo_loss(chosen, rejected, _t(2.0), _t(3.0))
    assert loss.item() == pytest.approx(LN2 + 0.1 * -math.log(0.8))
    assert stats["orpo/log_odds_ratio"].item() == pytest.approx(math.log(4))
    assert stats["loss/nll"].item() == pytest.approx(LN2)
    assert stats["loss/odds_ratio"].item() == pytest.approx(-math.log(0.8))
    assert stats["rewards/chosen"].item() == pytest.approx(0.1 * math.log(0.5))
    assert stats["rewards/accuracy"].item() == 1.0
    # Gradients. d log odds / d a = 1/(1 − e^a): 2 at P ½, 1.25 at P 0.2; d(−ln σ(r))/dr = −σ(−r) = −0.2.
    # chosen mean: −1 + 0.1·(−0.2)·2 = −1.04, per summed log-prob ÷ 2 tokens = −0.52;
    # rejected mean: 0.1·(−0.2)·(−1.25) = 0.025, ÷ 3 tokens = 0.008333.
    loss.backward()
    assert chosen.grad.item() == pytest.approx(-0.52)
    assert rejected.grad.item() == pytest.approx(0.025 / 3)


def test_simpo_at_known_log_probs():
    # β = 2, γ/β = ½ (γ = 1). Pair 1: chosen summed −1 over 4 tokens (mean −¼), rejected −2 over 2
    # (mean −1): z = 2·(−¼) − 2·(−1) − 1 = ½, loss −ln σ(½) = ln(1 + e^−½) = 0.474077.
    # Pair 2: equal means: z = −γ = −1, loss ln(1 + e) = 1.313262. Mean 0.893670.
    loss, stats = simpo_loss(_t(-1.0, -3.0), _t(-2.0, -3.0), _t(4.0, 3.0), _t(2.0, 3.0))
    assert loss.item() == pytest.approx((math.log1p(math.exp(-0.5)) + math.log1p(math.e)) / 2)
    # rewards β·mean: chosen (−½, −2) → −1.25; rejected (−2, −2) → −2; margin ¾; accuracy ½
    assert stats["rewards/chosen"].item() == pytest.approx(-1.25)
    assert stats["rewards/margin"].item() == pytest.approx(0.75)
    assert stats["rewards/accuracy"].item() == pytest.approx(0.5)


def test_simpo_is_length_normalised_and_cpo_is_not():
    # the same per-token log-probs over twice the tokens: SimPO's rewards are unchanged; CPO's
    # summed log-probs double, so its preference term changes.
    one = simpo_loss(_t(-1.0), _t(-2.0), _t(4.0), _t(2.0))[0]
    two = simpo_loss(_t(-2.0), _t(-4.0), _t(8.0), _t(4.0))[0]
    assert one.item() == pytest.approx(two.item())
    cpo_one = cpo_loss(_t(-1.0), _t(-2.0), _t(4.0), _t(2.0))[1]["loss/preference"]
    cpo_two = cpo_loss(_t(-2.0), _t(-4.0), _t(8.0), _t(4.0))[1]["loss/preference"]
    assert cpo_two.item() < cpo_one.item()


def test_cpo_at_known_log_probs():
    # β = 0.1: summed log-probs chosen −2 (4 tokens), rejected −2 − 10 ln 3, so β·h = ln 3,
    # preference −ln σ(ln 3) = −ln ¾ = 0.287682; NLL = 2/4 = ½; α = 1: L = 0.787682.
    chosen, rejected = _t(-2.0, grad=True), _t(-2.0 - 10 * LN3, grad=True)
    loss, stats = cpo_loss(chosen, rejected, _t(4.0), _t(5.0))
    assert loss.item() == pytest.approx(-math.log(0.75) + 0.5)
    assert stats["loss/preference"].item() == pytest.approx(-math.log(0.75))
    assert stats["rewards/margin"].item() == pytest.approx(LN3)
    # ∂L/∂log π(y_w) = −β·σ(−βh) − α/|y_w| = −0.1·¼ − ¼ = −0.275; ∂L/∂log π(y_l) = +0.025
    loss.backward()
    assert chosen.grad.item() == pytest.approx(-0.275)
    assert rejected.grad.item() == pytest.approx(0.025)


def test_soft_labels_take_the_label_smoothed_form():
    # SimPO with μ = ¾ and z = ½ (pair 1 above): −[¾·ln σ(½) + ¼·ln σ(−½)]
    loss, _ = simpo_loss(_t(-1.0), _t(-2.0), _t(4.0), _t(2.0), label=_t(0.75))
    expected = 0.75 * math.log1p(math.exp(-0.5)) + 0.25 * math.log1p(math.exp(0.5))
    assert loss.item() == pytest.approx(expected)
    # ORPO with a tie: the NLL is the mean of both sides' (½·ln 2 + ½·ln 5 with P ½ and 0.2)
    _, stats = orpo_loss(_t(2 * math.log(0.5)), _t(3 * math.log(0.2)), _t(2.0), _t(3.0), label=_t(0.5))
    assert stats["loss/nll"].item() == pytest.approx((LN2 + math.log(5)) / 2)
