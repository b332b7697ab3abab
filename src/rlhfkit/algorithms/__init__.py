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
from rlhfkit.algorithms.kl import AdaptiveKLController, FixedKLController, kl_k1, kl_k2, kl_k3, make_kl_controller
from rlhfkit.algorithms.logprobs import entropy_from_logits, selected_token_logprobs
from rlhfkit.algorithms.losses import (
    aggregate_loss,
    bradley_terry_loss,
    clipped_surrogate,
    ppo_policy_loss,
    ppo_value_loss,
)
from rlhfkit.algorithms.shaping import kl_penalized_token_rewards, last_token_index
from rlhfkit.algorithms.stats import masked_mean, masked_sum, masked_var, whiten

__all__ = [
    "AdaptiveKLController",
    "aggregate_loss",
    "clipped_surrogate",
    "group_normalized_advantages",
    "reward_to_go",
    "rloo_advantages",
    "FixedKLController",
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
    "ppo_policy_loss",
    "ppo_value_loss",
    "selected_token_logprobs",
    "whiten",
]
