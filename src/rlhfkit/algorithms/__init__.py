"""Pure math of RLHF: tensors in, tensors (and small stats dicts) out.

This room imports torch and `rlhfkit.types` only — never models, data, transformers or peft
(tests/test_architecture.py enforces it). Shape letters: B batch, T response tokens, V vocab.
Every function here has a test with hand-worked values (see ../shared/REFERENCES.md).
"""

from rlhfkit.algorithms.advantages import (
    gae,
    gae_reference_loop,
    group_normalized_advantages,
    reward_to_go,
    rloo_advantages,
)
from rlhfkit.algorithms.kl import (
    AdaptiveKLController,
    KL_CONTROLLERS,
    FixedKLController,
    PIKLController,
    kl_k1,
    kl_k2,
    kl_k3,
    make_kl_controller,
)
from rlhfkit.algorithms.logprobs import (
    entropy_from_logits,
    selected_token_logprobs,
    selected_token_logprobs_and_entropy,
)
from rlhfkit.algorithms.losses import (
    aggregate_loss,
    bradley_terry_loss,
    clipped_surrogate,
    ppo_value_loss,
)
from rlhfkit.algorithms.masking import masked_logits, top_p_mask
from rlhfkit.algorithms.preference import (
    dpo_loss,
    ipo_loss,
    kto_kl_estimate,
    kto_loss,
    sft_loss,
)
from rlhfkit.algorithms.reference_free import cpo_loss, log_odds, orpo_loss, simpo_loss
from rlhfkit.algorithms.reward_losses import (
    concordance,
    ensemble_mean_std,
    ranking_loss,
    rating_regression_loss,
    thumbs_bce_loss,
    uncertainty_penalized_score,
)
from rlhfkit.algorithms.shaping import (
    batch_normalize_scores,
    clip_scores,
    kl_penalized_token_rewards,
    last_token_index,
    penalize_missing_eos,
    shape_scores,
    standardize_scores,
)
from rlhfkit.algorithms.stats import (
    RunningMoments,
    masked_mean,
    masked_sum,
    masked_var,
    whiten,
)

__all__ = [
    "cpo_loss",
    "log_odds",
    "orpo_loss",
    "simpo_loss",
    "concordance",
    "dpo_loss",
    "ensemble_mean_std",
    "ipo_loss",
    "kto_kl_estimate",
    "kto_loss",
    "masked_logits",
    "ranking_loss",
    "rating_regression_loss",
    "sft_loss",
    "thumbs_bce_loss",
    "top_p_mask",
    "uncertainty_penalized_score",
    "AdaptiveKLController",
    "aggregate_loss",
    "clipped_surrogate",
    "group_normalized_advantages",
    "reward_to_go",
    "rloo_advantages",
    "FixedKLController",
    "KL_CONTROLLERS",
    "PIKLController",
    "bradley_terry_loss",
    "entropy_from_logits",
    "gae",
    "gae_reference_loop",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_penalized_token_rewards",
    "last_token_index",
    "make_kl_controller",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "ppo_value_loss",
    "selected_token_logprobs",
    "selected_token_logprobs_and_entropy",
    "whiten",
    "RunningMoments",
    "batch_normalize_scores",
    "clip_scores",
    "penalize_missing_eos",
    "shape_scores",
    "standardize_scores",
]
