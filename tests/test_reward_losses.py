"""Reward-model losses with hand-worked values (REFERENCES.md, "Reward models"; InstructGPT,
Ouyang et al. 2022, eq. 1), directly and through the typed label classes of trainers/reward.py.

Every value below uses softplus(−x) = −log σ(x) = log(1 + e^(−x)), and −log σ(−x) = x − log σ(x):
    −log σ(1)  = log(1 + e^−1) = 0.313262     −log σ(−1) = 1 + 0.313262 = 1.313262
    −log σ(2)  = log(1 + e^−2) = 0.126928     −log σ(−2) = 2 + 0.126928 = 2.126928
    −log σ(½)  = log(1 + e^−½) = 0.474077     −log σ(−½) = ½ + 0.474077 = 0.974077
    −log σ(−3) = 3 + log(1 + e^−3) = 3 + 0.048587 = 3.048587
"""

import itertools
import math

import pytest
import torch

from rlhfkit.algorithms import bradley_terry_loss
from rlhfkit.algorithms.reward_losses import (
    concordance,
    ensemble_mean_std,
    ranking_loss,
    rating_regression_loss,
    thumbs_bce_loss,
    uncertainty_penalized_score,
)
from rlhfkit.trainers.reward import (
    LABEL_TYPES,
    PairwiseLabels,
    RankingLabels,
    RatingLabels,
    RewriteLabels,
    ThumbsLabels,
)
from rlhfkit.types import (
    PairwiseRecord,
    RankingRecord,
    RatingRecord,
    RewriteRecord,
    ThumbsRecord,
)

NLS1, NLS2, NLS_HALF = 0.313262, 0.126928, 0.474077  # −log σ(1), −log σ(2), −log σ(½)


# --- K-wise ranking ---------------------------------------------------------------------------


def test_ranking_loss_k3_hand_worked():
    # Row 1, scores [2, 1, 0] in the labelled order (best first): C(3,2) = 3 pairs,
    # r1−r2 = 1, r1−r3 = 2, r2−r3 = 1 → (0.313262 + 0.126928 + 0.313262) / 3 = 0.251151.
    loss, stats = ranking_loss(torch.tensor([[2.0, 1.0, 0.0]]))
    assert loss.item() == pytest.approx(0.251151, abs=1e-5)
    assert stats["accuracy"].item() == 1.0 and stats["pairs"].item() == 3
    # Row 2, scores [0, 1, 3]: the model has the order backwards: differences −1, −3, −2 →
    # (1.313262 + 3.048587 + 2.126928) / 3 = 2.162926. The batch is the mean over prompts.
    loss, stats = ranking_loss(torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]]))
    assert loss.item() == pytest.approx((0.251151 + 2.162926) / 2, abs=1e-5)
    assert stats["accuracy"].item() == pytest.approx(3 / 6) and stats["pairs"].item() == 6


def test_ranking_loss_scales_each_prompt_by_its_own_pair_count():
    # K = 2 (padding masked, its score ignored) and K = 3 in one batch: InstructGPT makes each
    # prompt one batch element, so the loss is (0.313262 / 1 + 0.753452 / 3) / 2 = 0.282206,
    # not the mean over the 4 pairs, (0.313262 + 0.753452) / 4 = 0.266679.
    scores = torch.tensor([[1.0, 0.0, 99.0], [2.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    loss, stats = ranking_loss(scores, mask)
    assert loss.item() == pytest.approx(0.282206, abs=1e-5)
    assert stats["pairs"].item() == 4


def test_ranking_loss_equals_bradley_terry_averaged_over_all_pairs():
    torch.manual_seed(0)
    scores = torch.randn(4, 5)  # B = 4 prompts, K = 5 ranked responses each
    pairs = list(itertools.combinations(range(5), 2))  # C(5,2) = 10 (i above j)
    better = torch.stack([scores[:, i] for i, _ in pairs], 1).reshape(-1)
    worse = torch.stack([scores[:, j] for _, j in pairs], 1).reshape(-1)
    bt, bt_stats = bradley_terry_loss(better, worse)
    loss, stats = ranking_loss(scores)
    assert loss.item() == pytest.approx(bt.item(), abs=1e-6)
    assert stats["accuracy"].item() == pytest.approx(bt_stats["accuracy"].item())


def test_ranking_loss_gradient_pushes_better_up():
    scores = torch.zeros(1, 3, requires_grad=True)
    ranking_loss(scores)[0].backward()
    # d/dr_i −log σ(r_i − r_j) = −(1 − σ(0)) = −½ at equal scores, +½ for the lower one; scaled by 1/3:
    # the best is above two (−2·½/3), the middle above one and below one (0), the worst below two (+1/3)
    assert scores.grad[0].tolist() == pytest.approx([-1 / 3, 0.0, 1 / 3])


# --- pointwise ----------------------------------------------------------------------------------


def test_rating_regression_loss():
    # errors r − t = 0.5, −1, −1 → MSE (0.25 + 1 + 1)/3 = 0.75, MAE 2.5/3
    loss, stats = rating_regression_loss(torch.tensor([1.0, -1.0, 2.0]), torch.tensor([0.5, 0.0, 3.0]))
    assert loss.item() == pytest.approx(0.75)
    assert stats["mae"].item() == pytest.approx(2.5 / 3)


def test_thumbs_bce_loss():
    # up at r = 2: −log σ(2) = 0.126928; down at r = −1: −log σ(1) = 0.313262;
    # down at r = ½: −log σ(−½) = 0.974077 → mean 1.414267 / 3 = 0.471422.
    # Classified by r > 0: right, right, wrong → accuracy 2/3.
    loss, stats = thumbs_bce_loss(torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.0]))
    assert loss.item() == pytest.approx(0.471422, abs=1e-5)
    assert stats["accuracy"].item() == pytest.approx(2 / 3)


# --- ensembles and pairwise accuracy --------------------------------------------------------------


def test_ensemble_disagreement_and_penalty():
    # members [1, 3]: mean 2, population std √((1 + 1)/2) = 1; [2, 2]: mean 2, std 0
    mean, std = ensemble_mean_std(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))
    assert mean.tolist() == [2.0, 2.0] and std.tolist() == [1.0, 0.0]
    # three members [0, 3, 6]: mean 3, std √((9 + 0 + 9)/3) = √6; one member disagrees by 0
    assert ensemble_mean_std(torch.tensor([0.0, 3.0, 6.0]))[1].item() == pytest.approx(math.sqrt(6))
    assert ensemble_mean_std(torch.tensor([[5.0]]))[1].item() == 0.0
    # mean − λ·std with λ = ½: [2 − ½, 2 − 0]
    assert uncertainty_penalized_score(torch.tensor([[1.0, 3.0], [2.0, 2.0]]), 0.5).tolist() == [1.5, 2.0]


def test_concordance():
    scores = torch.tensor([3.0, 2.5, 2.0, 0.0])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    # comparisons (label_i > label_j): (0,1) 3 > 2.5 ✓, (0,3) ✓, (2,1) 2 > 2.5 ✗, (2,3) ✓ → 3/4
    accuracy, pairs = concordance(scores, labels)
    assert (accuracy.item(), pairs.item()) == (0.75, 4)
    assert concordance(scores, labels, chunk_size=1)[0].item() == 0.75
    # within groups [0, 0, 1, 1] only (0,1) and (2,3) are compared: both right
    accuracy, pairs = concordance(scores, labels, torch.tensor([0, 0, 1, 1]))
    assert (accuracy.item(), pairs.item()) == (1.0, 2)
    # equal scores are not a correct ordering; equal labels are no comparison at all
    assert concordance(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]))[0].item() == 0.0
    accuracy, pairs = concordance(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5]))
    assert math.isnan(accuracy.item()) and pairs.item() == 0


# --- through the typed label classes ---------------------------------------------------------------


def _scores(*columns):
    """Member scores (N, M) from M lists of N scores."""
    return torch.tensor(columns).T


def test_label_types_cover_every_kind():
    assert set(LABEL_TYPES) == {"pairwise", "ranking", "rating", "thumbs", "rewrite", "stepwise"}
    assert all(cls.kind == name for name, cls in LABEL_TYPES.items())


def test_pairwise_labels_hard_tie_soft_and_margin():
    label = PairwiseLabels()
    records = [
        PairwiseRecord("p", "a", "b", label=1.0),  # hard: −log σ(1) = 0.313262
        PairwiseRecord("p", "c", "d", label=0.5),  # tie: ½·0.313262 + ½·1.313262 = 0.813262
        PairwiseRecord("p", "e", "f", label=0.8),  # soft: 0.8·0.313262 + 0.2·1.313262 = 0.513262
    ]
    batch = label.to_batch(records)
    assert batch.responses == ["a", "c", "e", "b", "d", "f"]  # chosen then rejected, one forward
    loss, stats = label.loss(_scores([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]), batch)  # r_chosen − r_rejected = 1
    assert loss.item() == pytest.approx((0.313262 + 0.813262 + 0.513262) / 3, abs=1e-5)
    assert stats["accuracy"].item() == 1.0  # the tie is not counted
    # margin m = ½ on a hard label: −log σ(1 − ½) = 0.474077
    batch = label.to_batch([PairwiseRecord("p", "a", "b", label=1.0, margin=0.5)])
    assert label.loss(_scores([1.0, 0.0]), batch)[0].item() == pytest.approx(NLS_HALF, abs=1e-5)


def test_pairwise_labels_average_over_ensemble_members():
    # member 1 puts chosen 1 above rejected (0.313262), member 2 one below (1.313262): mean 0.813262
    batch = PairwiseLabels().to_batch([PairwiseRecord("p", "a", "b")])
    loss, stats = PairwiseLabels().loss(_scores([1.0, 0.0], [0.0, 1.0]), batch)
    assert loss.item() == pytest.approx(0.813262, abs=1e-5)
    assert stats["accuracy"].item() == 0.5


def test_rewrite_labels_prefer_the_rewrite():
    label = RewriteLabels()
    records = [RewriteRecord(prompt="q", original="draft", rewrite="better")]
    batch = label.to_batch(records)
    assert batch.responses == ["better", "draft"]
    # r(rewrite) − r(original) = 2: −log σ(2) = 0.126928
    assert label.loss(_scores([2.0, 0.0]), batch)[0].item() == pytest.approx(NLS2, abs=1e-5)
    assert label.reference_responses(records) == (["q"], ["draft"])  # the policy's outputs


def test_ranking_labels_one_forward_per_response():
    label = RankingLabels()
    batch = label.to_batch([RankingRecord("p", ("a", "b", "c")), RankingRecord("q", ("d", "e"))])
    assert batch.responses == ["a", "b", "c", "d", "e"]
    # scores [2, 1, 0] and [1, 0]: (0.251151 + 0.313262) / 2 = 0.282206 (as in the masked test above)
    loss, stats = label.loss(_scores([2.0, 1.0, 0.0, 1.0, 0.0]), batch)
    assert loss.item() == pytest.approx(0.282206, abs=1e-5)
    assert stats["pairs"].item() == 4


def test_rating_labels_standardise_the_scale():
    label = RatingLabels()
    records = [RatingRecord("p", "a", 2.0), RatingRecord("p", "b", 4.0), RatingRecord("p", "c", 6.0)]
    label.fit(records)
    # mean 4, population std √((4 + 0 + 4)/3) = 1.632993 → targets [−1.224745, 0, 1.224745]
    assert (label.mean, label.std) == pytest.approx((4.0, 1.632993))
    batch = label.to_batch(records)
    assert batch.targets["target"].tolist() == pytest.approx([-1.224745, 0.0, 1.224745], abs=1e-5)
    # scores [−1, 0, 1]: errors ±0.224745 → MSE 2 · 0.050510 / 3 = 0.033673
    assert label.loss(_scores([-1.0, 0.0, 1.0]), batch)[0].item() == pytest.approx(0.033673, abs=1e-5)
    # the same ratings on a 1–5 scale halved give the same targets
    halved = RatingLabels()
    halved_records = [RatingRecord("p", r.response, r.rating / 2) for r in records]
    halved.fit(halved_records)
    assert halved.to_batch(halved_records).targets["target"].tolist() == pytest.approx(batch.targets["target"].tolist())


def test_thumbs_labels_bce():
    label = ThumbsLabels()
    records = [ThumbsRecord("p", "a", True), ThumbsRecord("p", "b", False), ThumbsRecord("p", "c", False)]
    loss, stats = label.loss(_scores([2.0, -1.0, 0.5]), label.to_batch(records))
    assert loss.item() == pytest.approx(0.471422, abs=1e-5)  # as in test_thumbs_bce_loss
    assert stats["thumbs_accuracy"].item() == pytest.approx(2 / 3)
