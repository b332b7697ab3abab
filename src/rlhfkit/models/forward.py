"""Batched forward passes over prompt + response that return only what training needs."""

from __future__ import annotations

import torch

from rlhfkit.algorithms.logprobs import selected_token_logprobs, selected_token_logprobs_and_entropy
from rlhfkit.algorithms.masking import masked_logits
from rlhfkit.types import ForwardOutput

__all__ = ["ForwardOutput", "response_forward", "trim_padding"]


def trim_padding(prompt_ids, prompt_mask, response_ids, response_mask):
    """Drop prompt columns that are padding in every row (left) and response columns that are
    padding in every row (right): the forward pass then costs what the longest row costs."""
    keep_p = prompt_mask.bool().any(0).nonzero()
    first = int(keep_p[0]) if len(keep_p) else 0
    keep_r = response_mask.bool().any(0).nonzero()
    last = int(keep_r[-1]) + 1 if len(keep_r) else 1
    return prompt_ids[:, first:], prompt_mask[:, first:], response_ids[:, :last], response_mask[:, :last]


def response_forward(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    value_head=None,
    with_entropy: bool = False,
    action_mask: torch.Tensor | None = None,
) -> ForwardOutput:
    """One pass of `model` over [prompt | response].

    prompt_*: (B, P) left-padded; response_*: (B, T) right-padded. The hidden states are cut to
    the T + 1 last positions before the LM head (`logits_to_keep`; an int, which every model
    takes), and only the chosen tokens' log-probs are kept (chunked logsumexp,
    `selected_token_logprobs`). Returns a `ForwardOutput` of (B, T) tensors, 0 on padding: logprobs in
    nats, and when asked values V(s_t) from `value_head` on the last hidden state and entropy.
    With an NLPO `action_mask` (B, T, V) bool, `logprobs` are of the policy renormalised over
    the allowed tokens and `unmasked_logprobs` of the policy itself (what the KL penalty uses);
    without one both fields hold the same tensor.
    """
    T = response_ids.shape[1]
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P+T)
    attention = torch.cat([prompt_mask.long(), response_mask.long()], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=False,
        logits_to_keep=T + 1, output_hidden_states=value_head is not None,
    )
    logits = out.logits[:, :-1]  # (B, T, V): position P−1+t predicts response token t
    mask = response_mask.to(torch.float32)
    entropy = None
    if with_entropy:
        unmasked, entropy = selected_token_logprobs_and_entropy(logits, response_ids)  # (B, T) each
        entropy = entropy * mask
    else:
        unmasked = selected_token_logprobs(logits, response_ids)
    unmasked = unmasked * mask
    logprobs = unmasked
    if action_mask is not None:
        logprobs = selected_token_logprobs(masked_logits(logits.float(), action_mask), response_ids) * mask
    values = None
    if value_head is not None:
        hidden = out.hidden_states[-1][:, -(T + 1):-1]  # (B, T, H), the state before token t
        values = value_head(hidden).float() * mask
    return ForwardOutput(logprobs=logprobs, unmasked_logprobs=unmasked, values=values, entropy=entropy)
