"""Loading and wrapping models: policy/reference/value/reward, LoRA, tiny test models.

May import torch, transformers, peft, safetensors. Must not import trainers, evaluation,
feedback or cli.
"""

from rlhfkit.models.heads import (
    RewardEnsemble,
    RewardModel,
    ValueHead,
    load_reward_model,
)
from rlhfkit.models.loading import (
    EMBEDDED_POLICY,
    EMBEDDED_REWARD_BACKBONE,
    eos_token_ids,
    load_policy,
    load_tokenizer,
    resolve_device,
    resolve_precision,
)
from rlhfkit.models.lora import add_lora, reference_forward

__all__ = [
    "EMBEDDED_POLICY",
    "EMBEDDED_REWARD_BACKBONE",
    "RewardEnsemble",
    "RewardModel",
    "ValueHead",
    "add_lora",
    "eos_token_ids",
    "load_policy",
    "load_reward_model",
    "load_tokenizer",
    "reference_forward",
    "resolve_device",
    "resolve_precision",
]
