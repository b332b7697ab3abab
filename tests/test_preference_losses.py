"""Offline losses (SFT cross-entropy, DPO, IPO, KTO) against values worked out by hand.

Formulas: ../shared/REFERENCES.md, "Direct preference methods". h is the log-ratio difference
(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l)); σ(ln 2) = 2/3, σ(ln 3) = 3/4.
"""

import math

import pytest
import torch

from rlhfkit.algorithms.preference import (
    dpo_loss,
    ipo_loss,
    kto_kl_estimate,
    kto_loss,
    sft_loss,
)

LN2, LN3 = math.log(2.0), math.log(3.0)


def _t(*values, grad=False):
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def test_dpo_at_known_log_probs():
    # β = ½. Pair 1: chosen log-ratio −1 − (−1 − 2 ln 2) = 2 ln 2, rejected log-ratio 0, so
    # h = 2 ln 2, βh = ln 2, loss −ln σ(ln 2) = −ln(2/3) = ln 1.5. Pair 2: equal log-ratios,
    # h = 0, loss −ln σ(0) = ln 2. Mean (ln 1.5 + ln 2)/2 = ln 3 / 2 = 0.549306.
    policy_chosen = _t(-1.0, -2.0, grad=True)
    ref_chosen = _t(-1.0 - 2 * LN2, -2.0)
    policy_rejected = _t(-3.0, -4.0, grad=True)
    ref_rejected = _t(-3.0, -4.0)
    loss, stats = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.5)
    assert loss.item() == pytest.approx(LN3 / 2)
    # implicit rewards β·log-ratio: chosen (ln 2, 0) → mean ln2/2; rejected 0; margin ln2/2.
    assert stats["rewards/chosen"].item() == pytest.approx(LN2 / 2)
    assert stats["rewards/rejected"].item() == pytest.approx(0.0)
    assert stats["rewards/margin"].item() == pytest.approx(LN2 / 2)
    # pair 1 has chosen > rejected, pair 2 a zero margin (not a win): accuracy ½
    assert stats["rewards/accuracy"].item() == pytest.approx(0.5)
    # ∂L/∂log π(y_w) = −β·σ(−βh)/B: pair 1 −½·(1/3)/2 = −1/12, pair 2 −½·½/2 = −1/8;
    # the rejected side gets the opposite sign.
    loss.backward()
    assert policy_chosen.grad.tolist() == pytest.approx([-1 / 12, -1 / 8])
    assert policy_rejected.grad.tolist() == pytest.approx([1 / 12, 1 / 8])


def test_dpo_default_beta_is_one_tenth():
    # β = 0.1 (REFERENCES.md): h = 10 ln 2 gives βh = ln 2 and the loss ln 1.5 = 0.405465.
    loss, _ = dpo_loss(_t(10 * LN2), _t(0.0), _t(0.0), _t(0.0))
    assert loss.item() == pytest.approx(math.log(1.5))


def test_soft_label_dpo_is_the_label_smoothed_form():
    # μ = 0.75, βh = ln 2: −[0.75·ln σ(ln 2) + 0.25·ln σ(−ln 2)] = 0.75·ln 1.5 + 0.25·ln 3
    # = 0.304099 + 0.274653 = 0.578752.
    loss, stats = dpo_loss(_t(10 * LN2), _t(0.0), _t(0.0), _t(0.0), beta=0.1, label=_t(0.75))
    assert loss.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * LN3)
    assert stats["rewards/accuracy"].item() == 1.0  # μ > ½ and chosen's reward is higher
    # a hard label μ = 1 gives back the plain DPO loss
    hard, _ = dpo_loss(_t(10 * LN2), _t(0.0), _t(0.0), _t(0.0), beta=0.1, label=_t(1.0))
    assert hard.item() == pytest.approx(math.log(1.5))
    # a tie (μ = ½) at h = 0: loss ln 2 and zero gradient (both directions weigh the same)
    policy_chosen = _t(-1.0, grad=True)
    tie, stats = dpo_loss(policy_chosen, _t(-1.0), _t(-1.0), _t(-1.0), label=_t(0.5))
    tie.backward()
    assert tie.item() == pytest.approx(LN2)
    assert policy_chosen.grad.item() == pytest.approx(0.0)
    assert stats["rewards/accuracy"].item() == 0.0  # ties are not counted
    # μ < ½ says rejected is better: a higher chosen reward is then a miss
    _, stats = dpo_loss(_t(1.0), _t(0.0), _t(0.0), _t(0.0), label=_t(0.25))
    assert stats["rewards/accuracy"].item() == 0.0


def test_ipo_pulls_h_to_one_over_two_tau():
    # τ = 0.1: target 1/(2τ) = 5. h = 3 → (3 − 5)² = 4; h = 5 → 0. Mean 2.
    loss, stats = ipo_loss(_t(3.0, 5.0), _t(0.0, 0.0), _t(0.0, 0.0), _t(0.0, 0.0), tau=0.1)
    assert loss.item() == pytest.approx(2.0)
    assert stats["rewards/accuracy"].item() == 1.0
    # soft label μ = 0.75: target (2μ − 1)/(2τ) = 0.5/0.2 = 2.5; h = 3 → 0.25. (The mixture
    # 0.75·(3 − 5)² + 0.25·(3 + 5)² = 3 + 16 = 19 is this plus the constant 25·(1 − 0.5²) = 18.75.)
    loss, _ = ipo_loss(_t(3.0), _t(0.0), _t(0.0), _t(0.0), tau=0.1, label=_t(0.75))
    assert loss.item() == pytest.approx(0.25)
    # a tie pulls h to 0: h = 3 → 9
    loss, _ = ipo_loss(_t(3.0), _t(0.0), _t(0.0), _t(0.0), tau=0.1, label=_t(0.5))
    assert loss.item() == pytest.approx(9.0)
    # ∂L/∂h = 2(h − 5) = −4 at h = 3, regardless of β (IPO is β-free)
    policy_chosen = _t(3.0, grad=True)
    ipo_loss(policy_chosen, _t(0.0), _t(0.0), _t(0.0), tau=0.1, beta=123.0)[0].backward()
    assert policy_chosen.grad.item() == pytest.approx(-4.0)


def test_ipo_on_per_token_averaged_log_ratios():
    # REFERENCES.md, IPO: h on log-ratios averaged per completion token (each side by its own count).
    # chosen: log π = −6, log π_ref = −9 over 3 tokens → summed ratio +3, averaged +1;
    # rejected: log π = −8, log π_ref = −4 over 4 tokens → summed −4, averaged −1.
    # averaged h = 1 − (−1) = 2; summed h = 3 − (−4) = 7. τ = 0.25 → target 1/(2τ) = 2.
    pc, pr, rc, rr = _t(-6.0), _t(-8.0), _t(-9.0), _t(-4.0)
    mean, stats = ipo_loss(pc, pr, rc, rr, tau=0.25, beta=0.5, chosen_tokens=_t(3.0), rejected_tokens=_t(4.0))
    assert mean.item() == pytest.approx(0.0)  # (2 − 2)²
    assert stats["rewards/margin"].item() == pytest.approx(1.0)  # β·h = 0.5 · 2, on the averages
    summed, stats = ipo_loss(pc, pr, rc, rr, tau=0.25, beta=0.5)
    assert summed.item() == pytest.approx(25.0)  # (7 − 2)²
    assert stats["rewards/margin"].item() == pytest.approx(3.5)  # 0.5 · 7
    # two pairs of different lengths: the second, log π = ref + 2 per token on 2 chosen tokens
    # (sum 4 → mean 2) and the same as ref on 5 rejected ones → h = 2; loss ((2−2)² + (2−2)²)/2 = 0
    loss, _ = ipo_loss(_t(-6.0, -1.0), _t(-8.0, -10.0), _t(-9.0, -5.0), _t(-4.0, -10.0), tau=0.25,
                       chosen_tokens=_t(3.0, 2.0), rejected_tokens=_t(4.0, 5.0))
    assert loss.item() == pytest.approx(0.0)
    # ∂L/∂log π(y_w) = 2(h − target)·(1/n_w): at h = 3 (chosen log π = −3, mean ratio 2), 2·1/3
    policy_chosen = _t(-3.0, grad=True)
    ipo_loss(policy_chosen, pr, rc, rr, tau=0.25, chosen_tokens=_t(3.0), rejected_tokens=_t(4.0))[0].backward()
    assert policy_chosen.grad.item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="both"):
        ipo_loss(pc, pr, rc, rr, chosen_tokens=_t(3.0))


def test_kto_with_a_given_z0():
    # β = 0.1, z₀ = 0.5, both examples with r = z₀ + 10 ln 3, so β(r − z₀) = ln 3.
    # desirable (λ_D = 1): v = σ(ln 3) = 3/4, loss 1 − 3/4 = 0.25;
    # undesirable (λ_U = 2): v = 2·σ(−ln 3) = 2/4, loss 2 − 0.5 = 1.5. Mean 0.875.
    r = 0.5 + 10 * LN3
    policy = _t(-1.0, -1.0, grad=True)
    ref = _t(-1.0 - r, -1.0 - r)
    desirable = torch.tensor([True, False])
    loss, stats = kto_loss(policy, ref, desirable, kl_estimate=0.5, beta=0.1, desirable_weight=1.0, undesirable_weight=2.0)
    assert loss.item() == pytest.approx(0.875)
    # implicit reward β·r = 0.05 + ln 3 for both kinds
    assert stats["rewards/desirable"].item() == pytest.approx(0.05 + LN3)
    assert stats["rewards/undesirable"].item() == pytest.approx(0.05 + LN3)
    assert stats["kl/z0"].item() == pytest.approx(0.5)
    # ∂L/∂r: desirable −λ_D·β·σ(1 − σ) = −0.1·(3/16) = −0.01875, undesirable +λ_U·β·(1/4)(3/4)
    # = +0.0375; each divided by the batch size 2.
    loss.backward()
    assert policy.grad.tolist() == pytest.approx([-0.01875 / 2, 0.0375 / 2])


def test_kto_reference_point_is_a_clamped_detached_batch_mean():
    # mismatched log-ratios 0.5 and −0.3: mean 0.1
    policy = _t(-2.0, -3.0, grad=True)
    z0 = kto_kl_estimate(policy, _t(-2.5, -2.7))
    assert z0.item() == pytest.approx(0.1)
    assert not z0.requires_grad
    # a negative mean (−0.4) is clamped to 0: a KL is never negative
    assert kto_kl_estimate(_t(-3.0, -3.0), _t(-2.5, -2.7)).item() == 0.0


def test_sft_loss_on_a_three_token_example():
    # vocabulary {0, 1, 2}, tokens [0, 1, 2]; logits[0] = log(1, 1, 2) predicts token 1 with
    # p = 1/4 (NLL ln 4), logits[1] = log(1, 1, 2) predicts token 2 with p = 1/2 (NLL ln 2).
    logits = torch.log(torch.tensor([[[1.0, 1.0, 2.0], [1.0, 1.0, 2.0], [5.0, 5.0, 5.0]]]))
    ids = torch.tensor([[0, 1, 2]])
    # completion only (the last token): ln 2 over one token
    loss, stats = sft_loss(logits, ids, torch.tensor([[0.0, 0.0, 1.0]]))
    assert loss.item() == pytest.approx(LN2)
    assert stats["tokens"].item() == 1
    # all tokens: (ln 4 + ln 2)/2 = 1.5 ln 2; the first token is never predicted, so its mask is ignored
    loss, stats = sft_loss(logits, ids, torch.tensor([[1.0, 1.0, 1.0]]))
    assert loss.item() == pytest.approx(1.5 * LN2)
    assert stats["nll_sum"].item() == pytest.approx(3 * LN2) and stats["tokens"].item() == 2
    # normalised by a whole accumulated batch's token count (4): 3 ln 2 / 4
    loss, _ = sft_loss(logits, ids, torch.tensor([[1.0, 1.0, 1.0]]), num_tokens=4)
    assert loss.item() == pytest.approx(0.75 * LN2)
