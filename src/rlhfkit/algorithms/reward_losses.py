"""Reward-model losses beyond the pairwise Bradley–Terry loss (which lives in losses.py), and
ensemble statistics. Pure functions: tensors in, (loss, stats) out (REFERENCES.md, reward models).

Shape letters: B batch (prompts or rated responses), K ranked candidates, M ensemble members.
Imports torch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ranking_pair_mask(mask: torch.Tensor) -> torch.Tensor:
    """Which (i, j) are a comparison "candidate i is ranked above candidate j".

    mask: (B, K) bool, True on real candidates (candidates ordered best first; padding anywhere).
    -> (B, K, K) bool: True where i < j and both are real.
    """
    K = mask.shape[-1]
    above = torch.ones(K, K, dtype=torch.bool, device=mask.device).triu(diagonal=1)  # (K, K): i < j
    return above & mask[:, :, None] & mask[:, None, :]


def ranking_loss(scores: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """K-wise ranking loss of InstructGPT (Ouyang et al. 2022, eq. 1).

    For one prompt with K ranked responses, every pair (y_w above y_l) is a Bradley–Terry
    comparison; the C(K,2) pair losses of a prompt are summed and scaled by 1/C(K,2), so each
    prompt is one batch element of equal weight however many responses it has:

        loss = mean over prompts b of  −1/C(K_b,2) · Σ_{i<j} log σ(r_bi − r_bj)

    scores: (B, K) rewards, candidates ordered best first; mask: (B, K) bool, True on real
    candidates (default all), each row needs at least two. With the same K in every row this is
    the mean Bradley–Terry loss over all B·C(K,2) pairs.
    Stats: accuracy = fraction of all pairs ordered correctly (r_i > r_j), pairs = their number.
    """
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    pairs = ranking_pair_mask(mask.bool())  # (B, K, K)
    diff = scores[:, :, None] - scores[:, None, :]  # (B, K, K): r_i − r_j
    pair_loss = -F.logsigmoid(diff) * pairs
    pairs_per_prompt = pairs.sum((1, 2)).clamp(min=1)  # (B,) C(K_b, 2)
    loss = (pair_loss.sum((1, 2)) / pairs_per_prompt).mean()
    with torch.no_grad():
        n_pairs = pairs.sum()
        accuracy = ((diff > 0) & pairs).sum().float() / n_pairs.clamp(min=1)
    return loss, {"accuracy": accuracy, "pairs": n_pairs}


def rating_regression_loss(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pointwise regression on ratings: mean squared error (r − t)².

    scores, targets: (B,). Targets should already be on a normalised scale (e.g. standardised
    ratings), so that the loss does not depend on whether people rated 1–5 or 1–10.
    Stats: mae = mean |r − t|.
    """
    err = scores - targets.to(scores.dtype)
    loss = (err**2).mean()
    return loss, {"mae": err.abs().mean().detach()}


def thumbs_bce_loss(scores: torch.Tensor, thumbs_up: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Binary cross-entropy on thumbs up/down, the score being the logit of P(up):

        loss = −mean[y·log σ(r) + (1 − y)·log σ(−r)]

    scores: (B,) rewards; thumbs_up: (B,) 1 for up, 0 for down (a probability also works).
    Stats: accuracy = fraction with (r > 0) == (y > ½).
    """
    target = thumbs_up.to(scores.dtype)
    loss = F.binary_cross_entropy_with_logits(scores, target)
    with torch.no_grad():
        accuracy = ((scores > 0) == (target > 0.5)).float().mean()
    return loss, {"accuracy": accuracy}


def ensemble_mean_std(member_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and disagreement of an ensemble's scores.

    member_scores: (..., M). -> (mean, std), each (...). std is the population standard
    deviation across the M members (divides by M), so a single member disagrees by 0.
    """
    mean = member_scores.mean(-1)
    std = ((member_scores - mean.unsqueeze(-1)) ** 2).mean(-1).sqrt()
    return mean, std


def uncertainty_penalized_score(member_scores: torch.Tensor, penalty: float) -> torch.Tensor:
    """Conservative ensemble reward mean − λ·std across members (Coste et al. 2023's
    uncertainty-weighted optimisation uses the variance; the std keeps the reward's units).

    member_scores: (..., M); penalty λ >= 0. -> (...).
    """
    mean, std = ensemble_mean_std(member_scores)
    return mean - penalty * std


def concordance(
    scores: torch.Tensor,
    labels: torch.Tensor,
    groups: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise accuracy of scores against labels: over all pairs (i, j) with labels_i > labels_j
    (and, given `groups`, groups_i == groups_j), the fraction with scores_i > scores_j.

    Pairs with equal labels are not comparisons; equal scores count as wrong. For binary labels
    over all pairs this is the ROC AUC with ties counted as misses. scores, labels: (N,); groups:
    (N,) long (e.g. a prompt id). -> (accuracy, number of pairs); accuracy is NaN without pairs.
    O(N²) comparisons, `chunk_size` rows at a time.
    """
    correct = torch.zeros((), dtype=torch.long)
    pairs = torch.zeros((), dtype=torch.long)
    for start in range(0, scores.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        compared = labels[rows, None] > labels[None, :]  # (C, N)
        if groups is not None:
            compared &= groups[rows, None] == groups[None, :]
        pairs += compared.sum().cpu()
        correct += (compared & (scores[rows, None] > scores[None, :])).sum().cpu()
    accuracy = correct.double() / pairs if pairs > 0 else torch.tensor(float("nan"), dtype=torch.float64)
    return accuracy, pairs
