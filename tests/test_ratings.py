"""algorithms/ratings.py against hand-worked values (REFERENCES.md "Ratings of models")."""

import math

import pytest

from rlhfkit.algorithms.ratings import (
    bradley_terry,
    elo_expected,
    length_controlled_win_rate,
    online_elo,
    predicted_win_matrix,
)


def test_elo_expected_and_online_update_by_hand():
    # equal ratings: E = 1/(1 + 10^0) = ½; 400 points apart: 1/(1 + 10^-1) = 10/11
    assert elo_expected(1000, 1000) == 0.5
    assert elo_expected(1400, 1000) == pytest.approx(10 / 11)
    # battle 1: A (0) beats B (1) at 1000/1000: Δ = K·(1 − ½) = 4·½ = 2 → A 1002, B 998
    # battle 2: B vs A, a tie: E_B = 1/(1 + 10^((1002 − 998)/400)) = 1/(1 + 10^0.01) = 0.4942438
    #           Δ = 4·(½ − 0.4942438) = 0.0230248 → B 998.0230248, A 1001.9769752
    e_b = 1 / (1 + 10 ** 0.01)
    ratings = online_elo([(0, 1, 1.0), (1, 0, 0.5)], 2, k=4)
    assert ratings[0] == pytest.approx(1002 - 4 * (0.5 - e_b), abs=1e-9)
    assert ratings[1] == pytest.approx(998 + 4 * (0.5 - e_b), abs=1e-9)
    assert 4 * (0.5 - e_b) == pytest.approx(0.0230248, abs=1e-6)
    # order matters for online Elo: the same battles reversed give other numbers
    assert online_elo([(1, 0, 0.5), (0, 1, 1.0)], 2) != ratings


def test_bradley_terry_closed_form_on_a_chain():
    # A–B and B–C only (a tree): the likelihood splits per edge, so each edge is fitted exactly:
    # A beat B 3 of 4 → θ_A − θ_B = logit(3/4) = ln 3 → 400·log10(3) = 190.849 Elo points;
    # B vs C: 2 wins, 1 tie, 1 loss → score 2.5/4 = 0.625 → 400·log10(0.625/0.375) = 88.739.
    # Mean 1000: R_B + (190.849 − 88.739)/3 = 1000 → R_B = 965.963, R_A = 1156.812, R_C = 877.224
    battles = [(0, 1, 1.0)] * 3 + [(0, 1, 0.0)] + [(1, 2, 1.0)] * 2 + [(1, 2, 0.5), (1, 2, 0.0)]
    r = bradley_terry(battles, 3)
    ab, bc = 400 * math.log10(3), 400 * math.log10(5 / 3)
    b = 1000 - (ab - bc) / 3
    assert r == pytest.approx([b + ab, b, b - bc], abs=1e-6)
    assert sum(r) / 3 == pytest.approx(1000)
    assert (ab, bc) == pytest.approx((190.849, 88.739), abs=1e-3)


def _independent_bt(battles, n, iters=20000, lr=0.5):
    """Plain-Python gradient ascent on the written-out BT log-likelihood in Elo units:
    ℓ(R) = Σ s·log p + (1 − s)·log(1 − p), p = 1/(1 + 10^((R_j − R_i)/400)),
    ∂ℓ/∂R_i = (ln10/400)·(s − p) and −(ln10/400)·(s − p) for R_j. Recentred to mean 1000."""
    r = [1000.0] * n
    c = math.log(10) / 400
    for _ in range(iters):
        g = [0.0] * n
        for i, j, s in battles:
            p = 1 / (1 + 10 ** ((r[j] - r[i]) / 400))
            g[i] += c * (s - p)
            g[j] -= c * (s - p)
        r = [x + lr * 400 * 400 / len(battles) * gi for x, gi in zip(r, g)]
        m = sum(r) / n
        r = [x - m + 1000 for x in r]
    return r


def test_bradley_terry_matches_an_independent_fit_on_four_players():
    battles = ([(0, 1, 1.0)] * 3 + [(1, 0, 1.0)] + [(0, 2, 1.0)] * 2 + [(0, 2, 0.5)] + [(2, 0, 1.0)]
               + [(1, 2, 1.0)] * 2 + [(2, 1, 1.0)] * 2 + [(3, 0, 1.0)] + [(0, 3, 1.0)] * 4
               + [(1, 3, 1.0)] * 3 + [(3, 1, 0.5)] + [(2, 3, 1.0)] * 2 + [(3, 2, 1.0)])
    expected = _independent_bt(battles, 4)
    assert bradley_terry(battles, 4) == pytest.approx(expected, abs=1e-3)
    # weights are counts: the battles deduplicated with their multiplicities give the same fit
    distinct = sorted(set(battles))
    weights = [battles.count(t) for t in distinct]
    assert bradley_terry(distinct, 4, weights=weights) == pytest.approx(expected, abs=1e-3)
    # order-independent, unlike online Elo
    assert bradley_terry(battles[::-1], 4) == pytest.approx(expected, abs=1e-3)


def test_bradley_terry_prior_keeps_an_unbeaten_player_finite():
    r = bradley_terry([(0, 1, 1.0)] * 5, 2, l2=1e-2)
    assert math.isfinite(r[0]) and r[0] > r[1]


def test_predicted_win_matrix():
    m = predicted_win_matrix([1200.0, 1000.0, 800.0])
    # 200 points: 1/(1 + 10^-0.5) = 0.7597; 400 points: 10/11
    assert m[0][1] == pytest.approx(1 / (1 + 10 ** -0.5))
    assert m[0][2] == pytest.approx(10 / 11)
    assert m[1][1] == 0.5 and m[2][0] == pytest.approx(1 / 11)


def test_length_controlled_win_rate_two_groups_closed_form():
    # Longer-A pairs (z = +c) win 4 of 5, shorter-A pairs (z = −c) 1 of 2. Two feature values and
    # two parameters: the fit is exact, σ(θ + φc) = 0.8 and σ(θ − φc) = 0.5, so
    # θ = (logit 0.8 + logit 0.5)/2 = ln 4 / 2 = ln 2 and the LC win rate σ(ln 2) = 2/3
    # (the raw win rate is 5/7: the length term took the longer answers' edge away).
    prefs = [1, 1, 1, 1, 0, 1, 0]
    z = [0.7] * 5 + [-0.7] * 2
    fit = length_controlled_win_rate(prefs, z)
    assert fit["lc_win_rate"] == pytest.approx(2 / 3, abs=1e-9)
    assert fit["theta"] == pytest.approx(math.log(2), abs=1e-9)
    # no length signal: the LC win rate is the plain mean preference (soft targets too)
    assert length_controlled_win_rate([1, 0.5, 0.5, 0.25], [0] * 4)["lc_win_rate"] == pytest.approx(0.5625)
