"""Hand-checked math of the feedback room: soft labels, debiasing, position statistics,
alignment, direct ratings (REFERENCES.md "AI feedback"), agreement statistics, label kinds."""

from __future__ import annotations

import math

import pytest

from rlhfkit.data.schemas import KINDS
from rlhfkit.feedback.agreement import (
    fleiss_kappa,
    krippendorff_alpha,
    percent_agreement,
)
from rlhfkit.feedback.judge import (
    alignment,
    debiased,
    expected_rating,
    position_stats,
    rating_to_reward,
    soft_label,
)
from rlhfkit.feedback.labels import (
    Demonstration,
    LabelError,
    PairwiseLabel,
    RankingLabel,
    RatingLabel,
    RewriteLabel,
    ThumbsLabel,
    borda_ranking,
    label_from_value,
    majority_thumbs,
    mean_pairwise,
    parse_value,
)


def test_soft_label_is_softmax_over_the_two_choices():
    # log P("1") = log 0.6, log P("2") = log 0.2 -> 0.6 / (0.6 + 0.2) = 0.75 (mass on other tokens ignored)
    assert soft_label(math.log(0.6), math.log(0.2)) == pytest.approx(0.75)
    assert soft_label(-3.0, -3.0) == 0.5
    # extreme differences stay finite: σ(1000) = 1, σ(−1000) = 0
    assert soft_label(0.0, -1000.0) == pytest.approx(1.0)
    assert soft_label(-1000.0, 0.0) == pytest.approx(0.0)


def test_debiasing_swaps_back_and_averages():
    # forward (A, B): P(pos 1) = 0.75 -> P(A) = 0.75; swapped (B, A): P(pos 1) = 0.75 -> P(A) = 0.25.
    # average = 0.5: a judge that always prefers position 1 by the same amount carries no preference.
    assert debiased(0.75, 0.75) == pytest.approx(0.5)
    # forward 0.8, swapped 0.1 (B in position 1 gets 0.1, so A gets 0.9): (0.8 + 0.9) / 2 = 0.85
    assert debiased(0.8, 0.1) == pytest.approx(0.85)


def test_position_stats_counts_same_position_and_which_one():
    # pair 1: 0.75 / 0.75 -> position 1 both times; pair 2: 0.8 / 0.1 -> consistent (A both times);
    # pair 3: 0.3 / 0.2 -> position 2 both times; pair 4: 0.5 / 0.9 -> a tie is no preference.
    stats = position_stats([0.75, 0.8, 0.3, 0.5], [0.75, 0.1, 0.2, 0.9])
    assert (stats.pairs, stats.same_position, stats.position1, stats.position2) == (4, 2, 1, 1)
    assert stats.same_position_rate == pytest.approx(0.5)


def test_alignment_leaves_out_gold_ties_and_counts_ai_ties_half():
    # AI: 0.9 (right), 0.2 (wrong, gold prefers first), 0.5 (AI tie: ½), 0.7 vs gold tie (left out),
    # 0.4 vs gold 0 (right). Counted 4 -> (1 + 0 + 0.5 + 1) / 4 = 0.625.
    score, counted = alignment([0.9, 0.2, 0.5, 0.7, 0.4], [1.0, 1.0, 0.0, 0.5, 0.0])
    assert counted == 4
    assert score == pytest.approx(0.625)


def test_expected_rating_and_reward_rescaling():
    # P("3") = P("4") = ½ (others ~0) -> expected rating 3.5 -> reward 2 (3.5 − 1)/9 − 1 = −4/9
    logps = [-1e9] * 10
    logps[2] = logps[3] = math.log(0.25)  # unnormalised: the softmax over the 10 choices fixes that
    assert expected_rating(logps) == pytest.approx(3.5)
    assert rating_to_reward(3.5) == pytest.approx(-4 / 9)
    assert rating_to_reward(1.0) == -1.0 and rating_to_reward(10.0) == 1.0
    # uniform over 1..10 -> 5.5 -> reward 0
    assert expected_rating([0.0] * 10) == pytest.approx(5.5)


# --------------------------------------------------------------------------------------------
# Agreement


def test_krippendorff_alpha_hand_worked_nominal():
    # units (a,a), (a,b), (b,b): coincidences o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n_a = n_b = 3, n = 6.
    # D_o = (o_ab + o_ba)/n = 2/6; D_e = (n_a n_b + n_b n_a)/(n(n−1)) = 18/30; α = 1 − (1/3)/(3/5) = 4/9.
    assert krippendorff_alpha([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(4 / 9)
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) is None  # no variation: α undefined
    assert krippendorff_alpha([["a"], ["b"]]) is None  # nothing pairable


def test_krippendorff_alpha_matches_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", 4 observers x 12 units with
    # missing values: α_nominal = 0.743, α_interval = 0.849.
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[o[u] for o in observers if o[u] is not None] for u in range(12)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)


def test_fleiss_kappa_matches_the_published_example():
    # Fleiss (1971) / Wikipedia's worked example: 10 subjects, 14 raters, 5 categories, κ = 0.210.
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    units = [[c for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(units) == pytest.approx(0.210, abs=5e-4)
    # two raters agreeing on two items with two categories: P̄ = 1, P_e = ½ -> κ = 1
    assert fleiss_kappa([["x", "x"], ["y", "y"]]) == pytest.approx(1.0)
    assert percent_agreement([["x", "x", "y"], ["y", "y"]]) == pytest.approx(2 / 4)


# --------------------------------------------------------------------------------------------
# Label kinds become valid training rows


@pytest.mark.parametrize(
    "label",
    [
        PairwiseLabel("p", "a", "b", 1.0),
        PairwiseLabel("p", "a", "b", 0.25),
        RankingLabel("p", ("a", "b", "c")),
        RatingLabel("p", "a", 7),
        ThumbsLabel("p", "a", False),
        RewriteLabel("p", "a", "a, corrected"),
        Demonstration("p", "written"),
    ],
)
def test_every_label_kind_exports_a_row_the_schema_accepts(label):
    row = label.to_row()
    record = KINDS[label.kind](row)
    assert record == label.to_record()


def test_pairwise_label_puts_the_preferred_response_first():
    # P(first) = 0.25 -> the second response is chosen with label 0.75
    row = PairwiseLabel("p", "a", "b", 0.25).to_row()
    assert (row["chosen"], row["rejected"], row["label"]) == ("b", "a", 0.75)
    assert PairwiseLabel("p", "a", "b", None).to_row() is None  # "both bad": no preference


def test_parse_value_checks_each_task():
    assert parse_value("pairwise", {"preferred": 1}, ["a", "b"]) == {"preferred": 1}
    assert parse_value("pairwise", {"preferred": "both_bad"}, ["a", "b"]) == {"preferred": "both_bad"}
    assert parse_value("rating", {"rating": 7.0}, ["a"]) == {"rating": 7}
    assert parse_value("ranking", {"order": [2, 0, 1]}, ["a", "b", "c"]) == {"order": [2, 0, 1]}
    for task, value, responses in [
        ("pairwise", {"preferred": 2}, ["a", "b"]),
        ("pairwise", {"preferred": True}, ["a", "b"]),
        ("ranking", {"order": [0, 0, 1]}, ["a", "b", "c"]),
        ("rating", {"rating": 11}, ["a"]),
        ("rating", {"rating": 6.5}, ["a"]),
        ("thumbs", {"thumbs_up": "yes"}, ["a"]),
        ("rewrite", {"rewrite": " a "}, ["a"]),  # unchanged
        ("demonstration", {"completion": "   "}, []),
    ]:
        with pytest.raises(LabelError):
            parse_value(task, value, responses)


def test_label_from_value_maps_indices_to_texts():
    label = label_from_value("ranking", "p", ["a", "b", "c"], {"order": [2, 0, 1]})
    assert label.responses == ("c", "a", "b")
    assert label_from_value("pairwise", "p", ["a", "b"], {"preferred": 1}).to_row()["chosen"] == "b"


def test_aggregators():
    # votes: first, first, tie, both_bad -> (1 + 1 + 0.5) / 3 = 5/6 for the first response
    label = mean_pairwise("p", ["a", "b"], [{"preferred": 0}, {"preferred": 0}, {"preferred": "tie"},
                                            {"preferred": "both_bad"}])
    assert label.p_first == pytest.approx(5 / 6)
    assert mean_pairwise("p", ["a", "b"], [{"preferred": "both_bad"}]) is None
    # Borda, K = 3: [2,0,1] gives 2:2, 0:1, 1:0; [0,2,1] gives 0:2, 2:1, 1:0 -> 2:3, 0:3, 1:0; tie -> index order
    ranking = borda_ranking("p", ["a", "b", "c"], [{"order": [2, 0, 1]}, {"order": [0, 2, 1]}])
    assert ranking.responses == ("a", "c", "b")
    assert majority_thumbs("p", ["a"], [{"thumbs_up": True}, {"thumbs_up": False}]) is None
    assert majority_thumbs("p", ["a"], [{"thumbs_up": True}] * 2 + [{"thumbs_up": False}]).thumbs_up is True
