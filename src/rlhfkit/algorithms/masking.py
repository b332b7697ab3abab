"""Action masks over the vocabulary (NLPO, Ramamurthy et al. 2022; nucleus sampling)."""

from __future__ import annotations

import torch


def top_p_mask(logits: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """True for the tokens of the top-p nucleus of softmax(logits): the smallest set of most
    likely tokens whose mass reaches top_p (a token is in iff the mass ranked above it is
    < top_p), and always at least the `min_tokens_to_keep` most likely. (..., V) -> bool (..., V).
    top_p = 1 keeps everything."""
    if top_p >= 1.0:
        return torch.ones_like(logits, dtype=torch.bool)
    sorted_logits, order = torch.sort(logits.float(), dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    keep_sorted = (torch.cumsum(probs, dim=-1) - probs) < top_p
    keep_sorted[..., :min_tokens_to_keep] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """−inf outside the mask: the policy renormalised over the allowed actions."""
    return logits.masked_fill(~mask, float("-inf"))
