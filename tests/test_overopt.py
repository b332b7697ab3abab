"""Over-optimization math (REFERENCES.md, "Overoptimization"): the best-of-n KL, the unbiased
best-of-n estimator on a hand-worked pool, and the least-squares fits of Gao et al.'s forms."""

import math
import random

import pytest

from rlhfkit.algorithms.overopt import (
    best_of_n_curve,
    best_of_n_expectation,
    best_of_n_kl,
    best_of_n_weights,
    extrapolation_check,
    fit_overoptimization,
)


def test_best_of_n_kl_formula():
    # log n − (n−1)/n: n = 1 → 0; n = 2 → 0.693147 − 0.5; n = 4 → 1.386294 − 0.75; n = 16 → 2.772589 − 0.9375
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(0.193147, abs=1e-6)
    assert best_of_n_kl(4) == pytest.approx(0.636294, abs=1e-6)
    assert best_of_n_kl(16) == pytest.approx(1.835089, abs=1e-6)
    with pytest.raises(ValueError):
        best_of_n_kl(0)


def test_unbiased_best_of_n_on_a_hand_worked_pool_of_four():
    # One prompt, m = 4 samples:      proxy  0.3  0.1  0.4  0.2
    #                                 gold   3    1    0    2
    # Sorted by proxy ascending, gold_(1..4) = 1, 2, 3, 0 and proxy_(1..4) = 0.1, 0.2, 0.3, 0.4.
    # Weight of the i-th: C(i−1, n−1)/C(4, n).
    proxy, gold = [0.3, 0.1, 0.4, 0.2], [3.0, 1.0, 0.0, 2.0]
    # n = 1: every weight 1/4 → gold (1+2+3+0)/4 = 1.5, proxy 1.0/4 = 0.25
    assert best_of_n_expectation(proxy, gold, 1) == pytest.approx((0.25, 1.5))
    # n = 2: C(4,2) = 6; weights 0, 1/6, 2/6, 3/6 → gold (2 + 6 + 0)/6 = 4/3. Check by listing the
    # six pairs and the proxy-best of each: {1,2}→g2 {1,3}→g3 {1,4}→g0 {2,3}→g3 {2,4}→g0 {3,4}→g0,
    # mean 8/6. Proxy: (0.2 + 2·0.3 + 3·0.4)/6 = 2.0/6
    assert best_of_n_weights(4, 2) == pytest.approx([0, 1 / 6, 2 / 6, 3 / 6])
    assert best_of_n_expectation(proxy, gold, 2) == pytest.approx((2.0 / 6, 8 / 6))
    # n = 3: C(4,3) = 4; weights 0, 0, 1/4, 3/4 → gold (3 + 0)/4 = 0.75 (only {1,2,3} avoids the
    # sample with proxy 0.4 and gold 0). Proxy (0.3 + 1.2)/4 = 0.375
    assert best_of_n_expectation(proxy, gold, 3) == pytest.approx((0.375, 0.75))
    # n = 4: the proxy-best sample itself, gold 0
    assert best_of_n_expectation(proxy, gold, 4) == pytest.approx((0.4, 0.0))
    # gold falls while proxy rises: over-optimization in miniature
    rows = best_of_n_curve([(proxy, gold)], [1, 2, 4])
    assert [r["gold"] for r in rows] == pytest.approx([1.5, 8 / 6, 0.0])
    assert [r["d"] for r in rows] == pytest.approx([0.0, math.sqrt(0.193147), math.sqrt(0.636294)], abs=1e-6)
    with pytest.raises(ValueError, match="pool of at least 5"):
        best_of_n_expectation(proxy, gold, 5)


def test_the_estimator_is_the_mean_over_all_subsets():
    # invariance: for a random pool, the weighted sum equals the brute-force average over all
    # C(m, n) subsets of the gold of each subset's proxy-best member (no ties: distinct proxies)
    import itertools

    rng = random.Random(3)
    proxy = rng.sample(range(100), 7)
    gold = [rng.uniform(-1, 1) for _ in proxy]
    for n in (1, 2, 3, 5, 7):
        subsets = list(itertools.combinations(range(7), n))
        brute = sum(gold[max(s, key=lambda i: proxy[i])] for s in subsets) / len(subsets)
        assert best_of_n_expectation(proxy, gold, n)[1] == pytest.approx(brute)


@pytest.mark.parametrize("form, alpha, beta", [("bon", 1.2, 0.4), ("rl", 0.8, 0.3)])
def test_fits_recover_known_alpha_and_beta_from_noisy_points(form, alpha, beta):
    rng = random.Random(0)
    d = [0.1 * i for i in range(1, 41)]  # d up to 4
    g = (lambda x: x) if form == "bon" else math.log
    score = [x * (alpha - beta * g(x)) + rng.gauss(0, 0.02) for x in d]
    fit = fit_overoptimization(d, score, form)
    assert fit.alpha == pytest.approx(alpha, abs=0.03) and fit.beta == pytest.approx(beta, abs=0.03)
    assert fit.r2 > 0.99
    # the peaks from the true α, β: bon d* = α/(2β) = 1.5, R* = α²/(4β) = 0.9;
    # rl d* = exp(α/β − 1) = exp(1.6667) = 5.294, R* = β·d* = 1.588
    true_peak = {"bon": (1.5, 0.9), "rl": (math.exp(0.8 / 0.3 - 1), 0.3 * math.exp(0.8 / 0.3 - 1))}[form]
    assert fit.d_peak == pytest.approx(true_peak[0], rel=0.1) and fit.score_peak == pytest.approx(true_peak[1], rel=0.1)


def test_exact_points_fit_exactly_and_extrapolate():
    # R(d) = d(1 − 0.5d): at d = 1, 2 → 0.5, 0; a two-point fit is exact
    fit = fit_overoptimization([1.0, 2.0], [0.5, 0.0], "bon")
    assert (fit.alpha, fit.beta, fit.r2) == (pytest.approx(1.0), pytest.approx(0.5), pytest.approx(1.0))
    assert fit.predict(3.0) == pytest.approx(3 * (1 - 1.5))  # −1.5
    check = extrapolation_check([0.5, 1.0, 2.0, 3.0], [0.375, 0.5, 0.0, -1.5], "bon", fit_upto=2.0)
    assert check["n_fit"] == 3 and check["n_predicted"] == 1 and check["max_abs_error"] == pytest.approx(0.0, abs=1e-9)
    # β ≤ 0: the curve never turns down, no peak
    assert fit_overoptimization([1.0, 2.0], [1.0, 3.0], "bon").d_peak is None
    with pytest.raises(ValueError, match="two points"):
        fit_overoptimization([0.0, 1.0], [0.0, 1.0], "bon")
