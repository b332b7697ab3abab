"""Log-probabilities of chosen tokens without materialising a (B, T, V) log-softmax."""

from __future__ import annotations

import torch


def selected_token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] for each position.

    logits: (B, T, V) raw scores predicting token t; token_ids: (B, T) long.
    Returns (B, T) in nats. Computed as logit[token] − logsumexp(logits), so only (B, T) values
    are kept, not the full normalised (B, T, V) tensor.
    """
    logits = logits.float()
    chosen = logits.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return chosen - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy H = logsumexp(z) − Σ softmax(z)·z of each position's distribution, in nats.

    logits: (..., V) -> (...).
    """
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)
