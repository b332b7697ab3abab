"""Log-probabilities of chosen tokens without materialising a (B, T, V) log-softmax."""

from __future__ import annotations

import torch

# Positions per chunk × V floats stay near a megabyte: each chunk's exp/sum passes run in cache,
# and no (B, T, V) float32 temporary is ever allocated (the logits may be bfloat16).
_CHUNK_ELEMENTS = 1 << 18


def _row_chunks(logits: torch.Tensor):
    """Slices over the leading (batch) dimension of (B, T, V) logits, each about _CHUNK_ELEMENTS."""
    per_row = max(logits[0].numel(), 1) if logits.shape[0] else 1
    step = max(1, _CHUNK_ELEMENTS // per_row)
    for start in range(0, logits.shape[0], step):
        yield slice(start, start + step)


class _ChosenLogprob(torch.autograd.Function):
    """log softmax(z)[a] = z_a − logsumexp(z) for (B, T, V) logits, chunk by chunk in float32.

    Backward: ∂/∂z_v = g·(1[v = a] − softmax(z)_v), recomputed from the saved logits and
    logsumexp, so only the logits themselves (in their own dtype) are kept for backward, not a
    float32 copy or a softmax. With want_entropy it also returns H = lse − Σ softmax(z)·z (no
    gradient), from the same chunks."""

    @staticmethod
    def forward(ctx, logits, token_ids, want_entropy: bool):
        B, T = token_ids.shape
        chosen = torch.empty(B, T, dtype=torch.float32, device=logits.device)
        lse = torch.empty(B, T, dtype=torch.float32, device=logits.device)
        entropy = torch.empty(B, T, dtype=torch.float32, device=logits.device) if want_entropy else torch.empty(0)
        for rows in _row_chunks(logits):
            z = logits[rows].float()  # (b, T, V)
            lse[rows] = torch.logsumexp(z, dim=-1)
            chosen[rows] = z.gather(-1, token_ids[rows].unsqueeze(-1)).squeeze(-1) - lse[rows]
            if want_entropy:
                probs = (z - lse[rows].unsqueeze(-1)).exp_()
                entropy[rows] = lse[rows] - (probs * z).sum(-1)
        ctx.save_for_backward(logits, token_ids, lse)
        ctx.mark_non_differentiable(entropy)
        return chosen, entropy

    @staticmethod
    def backward(ctx, grad_chosen, grad_entropy):
        logits, token_ids, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for rows in _row_chunks(logits):
            g = grad_chosen[rows].unsqueeze(-1)  # (b, T, 1)
            part = (logits[rows].float() - lse[rows].unsqueeze(-1)).exp_().mul_(-g)  # −g·softmax
            part.scatter_add_(-1, token_ids[rows].unsqueeze(-1), g)
            grad[rows] = part
        return grad, None, None


def selected_token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] for each position.

    logits: (B, T, V) raw scores predicting token t (any float dtype); token_ids: (B, T) long.
    Returns (B, T) float32 in nats. Computed as logit[token] − logsumexp(logits) in chunks of
    rows, so neither the normalised (B, T, V) tensor nor a float32 copy of the logits is built.
    """
    if logits.dim() == 2:  # (N, V) and (N,): one position per chunk row, so the chunks stay small
        return _ChosenLogprob.apply(logits.unsqueeze(1), token_ids.unsqueeze(1), False)[0].squeeze(1)
    return _ChosenLogprob.apply(logits, token_ids, False)[0]


def selected_token_logprobs_and_entropy(logits: torch.Tensor, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(`selected_token_logprobs`, `entropy_from_logits` without gradient) in one pass over the
    logits: two (B, T) float32 tensors in nats (two (N,) for (N, V) logits)."""
    if logits.dim() == 2:
        chosen, entropy = _ChosenLogprob.apply(logits.unsqueeze(1), token_ids.unsqueeze(1), True)
        return chosen.squeeze(1), entropy.squeeze(1)
    return _ChosenLogprob.apply(logits, token_ids, True)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy H = logsumexp(z) − Σ softmax(z)·z of each position's distribution, in nats.

    logits: (..., V) -> (...).
    """
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)
