"""Perplexity of responses under a reference model, and its per-token predictive entropy.

perplexity = exp(Σ −log p_ref(y_t | x, y_<t) / Σ T) over all response tokens of the set (nats
inside the exp); token entropy = mean over those positions of H(p_ref(· | x, y_<t)) in nats.
A fluent response has a low perplexity under the reference; reward hacking often raises it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from rlhfkit.data.chat import encode_prompts, uses_chat_template
from rlhfkit.models.forward import response_forward


def _encode_responses(tokenizer, responses: Sequence[str], chat: bool, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) right-padded response ids and mask. Samples are stored stripped, so outside a chat
    turn the leading space the model wrote is put back before tokenising."""
    encoded = [tokenizer(r if chat else " " + r, add_special_tokens=False)["input_ids"][:max_tokens] or
               [tokenizer.eos_token_id] for r in responses]
    T = max(len(e) for e in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(encoded), T), pad, dtype=torch.long)
    mask = torch.zeros(len(encoded), T, dtype=torch.long)
    for i, e in enumerate(encoded):
        ids[i, : len(e)] = torch.tensor(e)
        mask[i, : len(e)] = 1
    return ids, mask


@torch.no_grad()
def perplexity(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], chat: bool | None = None,
               batch_size: int = 16, max_tokens: int = 256) -> dict[str, float]:
    """{"perplexity", "token_entropy_nats", "tokens"} of `responses` given `prompts` under `model`."""
    device = next(model.parameters()).device
    chat = uses_chat_template(tokenizer, chat)
    nll, entropy, count = 0.0, 0.0, 0
    for start in range(0, len(prompts), batch_size):
        p_ids, p_mask = encode_prompts(tokenizer, prompts[start:start + batch_size], chat, device=device)
        r_ids, r_mask = _encode_responses(tokenizer, responses[start:start + batch_size], chat, max_tokens)
        r_ids, r_mask = r_ids.to(device), r_mask.to(device)
        out = response_forward(model, p_ids, p_mask, r_ids, r_mask, with_entropy=True)
        mask = r_mask.float()
        nll -= float((out.logprobs * mask).sum())
        entropy += float((out.entropy * mask).sum())
        count += int(mask.sum())
    if count == 0:
        return {"perplexity": float("nan"), "token_entropy_nats": float("nan"), "tokens": 0}
    return {"perplexity": float(torch.tensor(nll / count).exp()), "token_entropy_nats": entropy / count, "tokens": count}
