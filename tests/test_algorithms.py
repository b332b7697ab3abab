"""Pure math with hand-worked expected values (derivations in comments; formulas from
../shared/REFERENCES.md)."""

import math

import pytest
import torch

from rlhfkit.algorithms import (
    AdaptiveKLController,
    FixedKLController,
    RunningMoments,
    batch_normalize_scores,
    bradley_terry_loss,
    clip_scores,
    clipped_surrogate,
    entropy_from_logits,
    gae,
    gae_reference_loop,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_penalized_token_rewards,
    last_token_index,
    masked_mean,
    masked_var,
    penalize_missing_eos,
    ppo_value_loss,
    selected_token_logprobs,
    shape_scores,
    standardize_scores,
    whiten,
)

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
M = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_masked_mean_and_var():
    # masked entries {1, 2, 4}: mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9;
    # unbiased variance (42/9)/2 = 7/3, biased (42/9)/3 = 14/9.
    assert masked_mean(X, M).item() == pytest.approx(7 / 3)
    assert masked_var(X, M).item() == pytest.approx(7 / 3)
    assert masked_var(X, M, unbiased=False).item() == pytest.approx(14 / 9)
    # per row: row 0 -> (1+2)/2, row 1 -> 4
    assert masked_mean(X, M, dim=1).tolist() == pytest.approx([1.5, 4.0])


def test_whiten_zero_mean_and_keep_mean():
    # (x − 7/3)/sqrt(7/3): 1 -> −0.872872, 2 -> −0.218218, 4 -> 1.091089; padding -> 0
    w = whiten(X, M)
    assert w[0, 0].item() == pytest.approx(-0.872872, abs=1e-5)
    assert w[0, 1].item() == pytest.approx(-0.218218, abs=1e-5)
    assert w[1, 0].item() == pytest.approx(1.091089, abs=1e-5)
    assert w[0, 2].item() == 0 and w[1, 2].item() == 0
    # zero_mean=False shifts the mean back: 1 -> −0.872872 + 7/3
    assert whiten(X, M, zero_mean=False)[0, 0].item() == pytest.approx(-0.872872 + 7 / 3, abs=1e-5)


def test_selected_token_logprobs_and_entropy():
    # logits = log [1, 2, 3] -> softmax = [1/6, 2/6, 3/6]; token 2 has log-prob log(1/2)
    logits = torch.log(torch.tensor([[[1.0, 2.0, 3.0]]]))
    lp = selected_token_logprobs(logits, torch.tensor([[2]]))
    assert lp.item() == pytest.approx(math.log(0.5))
    # adding a constant to every logit changes nothing
    assert selected_token_logprobs(logits + 7.0, torch.tensor([[0]])).item() == pytest.approx(math.log(1 / 6))
    # entropy of [1/6, 1/3, 1/2] = −Σ p log p = 1.011404 nats
    assert entropy_from_logits(logits).item() == pytest.approx(1.011404, abs=1e-5)


def test_kl_estimators():
    # π(a) = 0.5, π_ref(a) = 0.25: lr = log(0.25/0.5) = −ln 2
    # k1 = −lr = ln 2; k2 = ½(ln 2)² = 0.240227; k3 = e^{−ln 2} − 1 + ln 2 = 0.193147
    lp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_k1(lp, ref).item() == pytest.approx(math.log(2))
    assert kl_k2(lp, ref).item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_k3(lp, ref).item() == pytest.approx(0.193147, abs=1e-6)
    # k3 is never negative, k1 can be
    lp2, ref2 = torch.tensor([math.log(0.25)]), torch.tensor([math.log(0.5)])
    assert kl_k1(lp2, ref2).item() < 0 <= kl_k3(lp2, ref2).item()


def test_kl_estimators_are_unbiased_on_a_known_pair():
    # π = [0.7, 0.3], π_ref = [0.4, 0.6]: KL(π‖π_ref) = 0.7 ln(7/4) + 0.3 ln(3/6) = 0.183787.
    # Exact expectations under π of k1 and k3 both equal it.
    p = torch.tensor([0.7, 0.3])
    q = torch.tensor([0.4, 0.6])
    k1 = (p * kl_k1(p.log(), q.log())).sum().item()
    k3 = (p * kl_k3(p.log(), q.log())).sum().item()
    assert k1 == pytest.approx(0.183787, abs=1e-6)
    assert k3 == pytest.approx(0.183787, abs=1e-6)


def test_adaptive_kl_controller_follows_ziegler():
    # e = clip(9/6 − 1, −0.2, 0.2) = 0.2; β = 0.1·(1 + 0.2·256/10000) = 0.100512
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(9.0, 256) == pytest.approx(0.100512)
    # e = clip(3/6 − 1) = −0.2 (clipped from −0.5): β = 0.100512·(1 − 0.00512)
    assert ctl.update(3.0, 256) == pytest.approx(0.100512 * (1 - 0.00512))
    # within the band the error is not clipped: e = 6.6/6 − 1 = 0.1
    ctl2 = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert ctl2.update(6.6, 10) == pytest.approx(0.1 * (1 + 0.1 * 10 / 100))
    assert FixedKLController(0.05).update(100.0, 64) == 0.05


def test_shaping_puts_score_on_last_real_token():
    # β = 0.5: −β·kl = [−0.05, −0.1, −0.15], the score 2.0 added at t = 2, padding 0
    rewards = kl_penalized_token_rewards(
        torch.tensor([2.0]), torch.tensor([[0.1, 0.2, 0.3, 9.0]]), 0.5, torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    )
    assert rewards.tolist()[0] == pytest.approx([-0.05, -0.1, 1.85, 0.0])
    assert last_token_index(torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])).tolist() == [1, 0, 2]


def test_score_shaping_pieces_hand_values():
    # clip to ±1: 3 -> 1, −0.2 stays, −5 -> −1
    assert clip_scores(torch.tensor([3.0, -0.2, -5.0]), 1.0).tolist() == pytest.approx([1.0, -0.2, -1.0])
    # batch [1, 3]: mean 2, Bessel std sqrt((1 + 1)/1) = sqrt 2 -> ∓1/sqrt 2 = ∓0.707107
    assert batch_normalize_scores(torch.tensor([1.0, 3.0])).tolist() == pytest.approx([-0.707107, 0.707107], abs=1e-6)
    assert batch_normalize_scores(torch.tensor([4.0])).tolist() == [4.0]  # one score: no spread to divide by
    # mean 4, variance 5: 5 -> 1/sqrt 5 = 0.447214, 7 -> 3/sqrt 5 = 1.341641
    assert standardize_scores(torch.tensor([5.0, 7.0]), 4.0, 5.0).tolist() == pytest.approx([0.447214, 1.341641], abs=1e-6)
    # only the response without EOS loses the penalty: [0.5 − 0.5, −0.2]
    finished = torch.tensor([False, True])
    assert penalize_missing_eos(torch.tensor([0.5, -0.2]), finished, 0.5).tolist() == pytest.approx([0.0, -0.2])


def test_shape_scores_in_order_clip_normalise_penalise():
    # clip then penalise: [3, −0.2] -> [1, −0.2] -> [1 − 0.5, −0.2]
    finished = torch.tensor([False, True])
    shaped = shape_scores(torch.tensor([3.0, -0.2]), finished, clip=1.0, missing_eos_penalty=0.5)
    assert shaped.tolist() == pytest.approx([0.5, -0.2])
    # no `finished` (the sampler does not know): no penalty
    assert shape_scores(torch.tensor([3.0]), None, missing_eos_penalty=0.5).tolist() == [3.0]
    # running: [1, 3] alone has mean 2, population variance 1 -> [−1, 1]; with [5, 7] the moments
    # are those of {1, 3, 5, 7}: mean 4, variance (9 + 1 + 1 + 9)/4 = 5 -> [1/sqrt 5, 3/sqrt 5]
    moments = RunningMoments()
    assert shape_scores(torch.tensor([1.0, 3.0]), norm="running", moments=moments).tolist() == pytest.approx([-1.0, 1.0])
    second = shape_scores(torch.tensor([5.0, 7.0]), norm="running", moments=moments)
    assert second.tolist() == pytest.approx([1 / math.sqrt(5), 3 / math.sqrt(5)], abs=1e-6)
    # normalise before the penalty: batch [1, 3] -> [−0.707107, 0.707107], then −0.5 on the first
    batch = shape_scores(torch.tensor([1.0, 3.0]), finished, norm="batch", missing_eos_penalty=0.5)
    assert batch.tolist() == pytest.approx([-1.207107, 0.707107], abs=1e-6)
    with pytest.raises(ValueError, match="needs the RunningMoments"):
        shape_scores(torch.tensor([1.0]), norm="running")
    with pytest.raises(ValueError, match="one of none, batch, running"):
        shape_scores(torch.tensor([1.0]), norm="whiten")


def test_running_moments_merge_batches_exactly():
    moments = RunningMoments()
    assert (moments.mean, moments.var, moments.count) == (0.0, 1.0, 0)
    moments.update(torch.tensor([1.0, 3.0]))  # mean 2, population variance ((−1)² + 1²)/2 = 1
    assert (moments.mean, moments.var, moments.count) == (pytest.approx(2.0), pytest.approx(1.0), 2)
    # [5, 7]: n = 2, m = 6, v = 1; N' = 4, δ = 4, μ' = 2 + 4·2/4 = 4, σ²' = (1·2 + 1·2 + 16·2·2/4)/4 = 5
    moments.update(torch.tensor([5.0, 7.0]))
    assert (moments.mean, moments.var, moments.count) == (pytest.approx(4.0), pytest.approx(5.0), 4)
    # [10] alone: n = 1, v = 0; δ = 6, μ' = 4 + 6/5 = 5.2, σ²' = (5·4 + 0 + 36·4·1/5)/5 = 9.76
    # (directly: {1, 3, 5, 7, 10} has Σx² = 184, so 184/5 − 5.2² = 36.8 − 27.04 = 9.76)
    moments.update(torch.tensor([10.0]))
    assert (moments.mean, moments.var, moments.count) == (pytest.approx(5.2), pytest.approx(9.76), 5)
    # a (2, 2) batch counts its four values: the moments of {1, 3, 5, 7} at once
    at_once = RunningMoments()
    at_once.update(torch.tensor([[1.0, 3.0], [5.0, 7.0]]))
    assert (at_once.mean, at_once.var, at_once.count) == (pytest.approx(4.0), pytest.approx(5.0), 4)


def test_gae_hand_values():
    # γ = 1, λ = 0.95 (REFERENCES.md, PPO for LMs); r = [0, 0, 1], V = [0.5, 0.4, 0.3], V_3 = 0
    # δ2 = 1 − 0.3 = 0.7; δ1 = 0.3 − 0.4 = −0.1; δ0 = 0.4 − 0.5 = −0.1
    # Â2 = 0.7; Â1 = −0.1 + 0.95·0.7 = 0.565; Â0 = −0.1 + 0.95·0.565 = 0.43675
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.4, 0.3]])
    adv, ret = gae(r, v, torch.ones(1, 3), gamma=1.0, lam=0.95)
    assert adv.tolist()[0] == pytest.approx([0.43675, 0.565, 0.7])
    assert ret.tolist()[0] == pytest.approx([0.93675, 0.965, 1.0])


def test_gae_vectorised_equals_reference_loop_with_padding():
    torch.manual_seed(1)
    lengths = [5, 3, 1, 4]
    T = 5
    r, v = torch.randn(4, T), torch.randn(4, T)
    mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths])
    for gamma, lam in [(1.0, 0.95), (0.9, 0.8), (0.99, 1.0)]:
        adv, ret = gae(r, v, mask, gamma, lam)
        for b, n in enumerate(lengths):
            expected = gae_reference_loop(r[b, :n].tolist(), v[b, :n].tolist(), gamma, lam)
            assert adv[b, :n].tolist() == pytest.approx(expected, abs=1e-5)
            assert adv[b, n:].abs().sum().item() == 0
            assert ret[b, :n].tolist() == pytest.approx([a + x for a, x in zip(expected, v[b, :n].tolist())], abs=1e-5)


def test_clipped_surrogate_and_its_approx_kl():
    # ratios [1.5, 0.5, 1.0], advantages [1, 1, −1], ε = 0.2:
    # t0: max(−1.5, −1.2) = −1.2 (clipped); t1: max(−0.5, −0.8) = −0.5; t2: max(1, 1) = 1
    # token mean = (−1.2 − 0.5 + 1)/3 = −0.233333; clip fraction 1/3
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))
    per_token, clipped = clipped_surrogate(new, old, torch.tensor([[1.0, 1.0, -1.0]]), 0.2)
    assert per_token.tolist()[0] == pytest.approx([-1.2, -0.5, 1.0])
    assert clipped.tolist() == [[True, False, False]]
    assert masked_mean(per_token, torch.ones(1, 3)).item() == pytest.approx(-0.7 / 3)
    assert masked_mean(clipped.float(), torch.ones(1, 3)).item() == pytest.approx(1 / 3)
    # padding does not count: masking t2 gives (−1.2 − 0.5)/2
    assert masked_mean(per_token, torch.tensor([[1.0, 1.0, 0.0]])).item() == pytest.approx(-0.85)
    # the trainer's policy/approx_kl_k3 is k3 of π_new against π_old: lr = log π_old − log π_new
    # = −log ρ, k3 = 1/ρ − 1 + log ρ: ρ 1.5 -> 0.666667 − 1 + 0.405465 = 0.072132;
    # ρ 0.5 -> 2 − 1 − 0.693147 = 0.306853; ρ 1 -> 0. Mean 0.378985/3 = 0.126328
    assert kl_k3(new, old).tolist()[0] == pytest.approx([0.072132, 0.306853, 0.0], abs=1e-6)
    assert masked_mean(kl_k3(new, old), torch.ones(1, 3)).item() == pytest.approx(0.126328, abs=1e-6)


def test_ppo_value_loss_clipping():
    # V = 1.0, V_old = 0.5, R = 2.0, c = 0.2: unclipped (1 − 2)² = 1; clipped V = 0.7 -> 1.69
    # loss = ½·max = 0.845; without clipping ½·1 = 0.5
    args = (torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[2.0]]), torch.ones(1, 1))
    assert ppo_value_loss(*args, clip_range=0.2)[0].item() == pytest.approx(0.845)
    assert ppo_value_loss(*args, clip_range=None)[0].item() == pytest.approx(0.5)


def test_bradley_terry_loss():
    a, b = torch.tensor([1.0]), torch.tensor([0.0])
    # hard label: −log σ(1) = log(1 + e^{−1}) = 0.313262
    assert bradley_terry_loss(a, b)[0].item() == pytest.approx(0.313262, abs=1e-6)
    # tie μ = ½: ½[log(1 + e^{−1}) + log(1 + e^{1})] = ½(0.313262 + 1.313262) = 0.813262
    assert bradley_terry_loss(a, b, torch.tensor([0.5]))[0].item() == pytest.approx(0.813262, abs=1e-6)
    # margin m = 1: −log σ(1 − 1) = ln 2
    assert bradley_terry_loss(a, b, margin=torch.tensor([1.0]))[0].item() == pytest.approx(math.log(2))
    # label 0 means b preferred: −log σ(−1) = 1.313262
    loss, stats = bradley_terry_loss(a, b, torch.tensor([0.0]))
    assert loss.item() == pytest.approx(1.313262, abs=1e-6)
    assert stats["accuracy"].item() == 0.0


def test_reward_to_go():
    # r = [1, 2, 3] (γ = 1): G = [6, 5, 3]; γ = 0.5: G2 = 3, G1 = 2 + 1.5 = 3.5, G0 = 1 + 1.75 = 2.75
    from rlhfkit.algorithms import reward_to_go

    r = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert reward_to_go(r, m).tolist()[0] == pytest.approx([6.0, 5.0, 3.0, 0.0])
    assert reward_to_go(r, m, gamma=0.5).tolist()[0] == pytest.approx([2.75, 3.5, 3.0, 0.0])


def test_rloo_equals_explicit_leave_one_out():
    # group [1, 2, 6]: A_0 = 1 − (2+6)/2 = −3; A_1 = 2 − 3.5 = −1.5; A_2 = 6 − 1.5 = 4.5
    from rlhfkit.algorithms import rloo_advantages

    rewards = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    assert rloo_advantages(rewards, 3).tolist() == pytest.approx([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0])
    torch.manual_seed(3)
    r = torch.randn(12)
    explicit = [r[i] - torch.cat([r[(i // 4) * 4 : i], r[i + 1 : (i // 4 + 1) * 4]]).mean() for i in range(12)]
    assert torch.allclose(rloo_advantages(r, 4), torch.stack(explicit), atol=1e-6)


def test_group_normalized_advantages():
    # group [1, 2, 3]: mean 2, sample std 1 -> [−1, 0, 1] / (1 + ε); a constant group -> 0
    from rlhfkit.algorithms import group_normalized_advantages

    out = group_normalized_advantages(torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0]), 3, eps=0.0)
    assert out.tolist()[:3] == pytest.approx([-1.0, 0.0, 1.0])
    assert group_normalized_advantages(torch.tensor([5.0, 5.0]), 2).tolist() == [0.0, 0.0]


def test_loss_aggregation_modes_and_their_accumulation():
    # two sequences: losses [1, 2 | pad] and [3, 4, 5]; lengths 2 and 3; max_len 4
    # token_mean = 15/5 = 3; sequence_mean = (1.5 + 4)/2 = 2.75; constant = 15/(2·4) = 1.875
    from rlhfkit.algorithms import aggregate_loss

    per_token = torch.tensor([[1.0, 2.0, 9.0], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    full = {mode: aggregate_loss(per_token, mask, mode, mask.sum(), 2, 4).item() for mode in ("token_mean", "sequence_mean", "constant")}
    assert full == pytest.approx({"token_mean": 3.0, "sequence_mean": 2.75, "constant": 1.875})
    for mode, value in full.items():  # the two single-row micro-batches add up to the full batch
        parts = sum(aggregate_loss(per_token[i : i + 1], mask[i : i + 1], mode, mask.sum(), 2, 4).item() for i in range(2))
        assert parts == pytest.approx(value)


def test_top_p_mask_keeps_the_nucleus_and_min_tokens():
    from rlhfkit.algorithms.masking import top_p_mask

    logits = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15]).log()
    # p = 0.9 (NLPO default): masses above, in order 1, 3, 4, 2, 0: 0, 0.4, 0.7, 0.85, 0.95 -> all but 0
    assert top_p_mask(logits, 0.9).tolist() == [False, True, True, True, True]
    assert top_p_mask(logits, 0.5).tolist() == [False, True, False, True, False]
    assert top_p_mask(logits, 0.5, min_tokens_to_keep=4).tolist() == [False, True, True, True, True]
    assert top_p_mask(logits, 1.0).all()
