"""Process reward models (Lightman et al. 2023, "Let's verify step by step"): a score for every
step of a solution, read at the step's last token, trained with a binary cross-entropy per step
on step labels (TRL's stepwise-supervision format: the steps of a completion and one bool each).

Pure pieces: where each step ends in characters, which token holds each step's end, the per-step
loss, and the per-token reward tensor with each step's reward on its last token. Imports torch
only.

Shapes: S steps (flattened over a batch), B sequences, T tokens.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def join_steps(steps: Sequence[str], separator: str) -> tuple[str, list[int]]:
    """The completion text `separator.join(steps)` and each step's end in it: the index one past
    the step's last non-space character (the separator and trailing spaces are not the step's)."""
    ends, position = [], 0
    for i, step in enumerate(steps):
        start = position + (len(separator) if i else 0)
        ends.append(start + len(step.rstrip()))
        position = start + len(step)
    return separator.join(steps), ends


def split_steps(text: str, separator: str) -> list[tuple[str, int]]:
    """A completion cut at `separator` into its steps, as (step, its end in `text` as in
    `join_steps`), pieces with nothing but whitespace dropped (a trailing separator makes no
    empty step)."""
    out, start = [], 0
    for piece in text.split(separator):
        if piece.strip():
            out.append((piece, start + len(piece.rstrip())))
        start += len(piece) + len(separator)
    return out


def step_end_tokens(token_spans: Sequence[tuple[int, int]], char_ends: Sequence[int]) -> list[int]:
    """For each step end e (a character index, exclusive), the index of the last token that starts
    before e: the token carrying the step's last character. token_spans: each token's (start, end)
    in the completion's characters, (−1, −1) for a token that carries no score (the prompt,
    special tokens). −1 for a step whose end lies past the last scoring token's end (truncated
    away) or before every token."""
    positions = []
    last_end = max((end for start, end in token_spans if start >= 0), default=-1)
    for e in char_ends:
        best = -1
        for index, (start, end) in enumerate(token_spans):
            if 0 <= start < e:
                best = index
        positions.append(best if best >= 0 and last_end >= e else -1)
    return positions


def stepwise_bce_loss(step_logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Binary cross-entropy per step, averaged over all S steps of the batch (every step weighs
    the same, as in Lightman et al.'s per-step classification):

        loss = −mean_s [y_s·log σ(z_s) + (1 − y_s)·log σ(−z_s)]

    step_logits: (S,) the score z_s at each step's last token, the logit of P(step correct);
    labels: (S,) 1 for a correct step, 0 otherwise. Stats: step_accuracy = share with
    (z > 0) == y."""
    target = labels.to(step_logits.dtype)
    loss = F.binary_cross_entropy_with_logits(step_logits, target)
    with torch.no_grad():
        accuracy = ((step_logits > 0) == (target > 0.5)).float().mean()
    return loss, {"step_accuracy": accuracy}


def step_rewards_from_logits(step_logits: torch.Tensor) -> torch.Tensor:
    """Each step's reward log σ(z) = log P(step correct): their sum over a solution is the log of
    Lightman et al.'s solution score, the product of the steps' probabilities of being correct."""
    return F.logsigmoid(step_logits)


def place_step_rewards(positions: Sequence[Sequence[int]], rewards: Sequence[Sequence[float]], T: int,
                       device=None) -> torch.Tensor:
    """(B, T) token rewards: each step's reward on its last token (positions[b][k], −1: no token,
    the reward is dropped), 0 elsewhere; two steps ending on one token add up."""
    dense = torch.zeros(len(positions), T, device=device)
    for b, (row_positions, row_rewards) in enumerate(zip(positions, rewards)):
        for t, r in zip(row_positions, row_rewards):
            if 0 <= t < T:
                dense[b, t] += float(r)
    return dense
