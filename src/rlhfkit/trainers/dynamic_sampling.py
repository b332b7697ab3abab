"""DAPO's dynamic sampling (Yu et al. 2025, §3.2): keep only the groups whose rewards differ, and
sample groups of fresh prompts until the batch is full again.

A group whose G rewards are all equal has group-normalised advantages of 0 and gives no gradient;
left in, it only shrinks the effective batch. `refill` takes the scored batch and a function that
samples and scores more groups, and returns a batch of the same size made of groups with
differing rewards, in the order they were drawn; after `max_rounds` extra rounds a batch still
short is topped up with the dropped groups of the first draw (counted in the stats, never hidden).

Rollouts are joined row-wise here (`select_rows`, `concat_rollouts`): prompts stay left-padded,
responses right-padded. Shapes: B rows (a prompt's G samples adjacent), P prompt, T response tokens.
"""

from __future__ import annotations

from typing import Callable

import torch

from rlhfkit.algorithms.grpo_variants import zero_variance_groups
from rlhfkit.types import Rollout

Scored = tuple[Rollout, torch.Tensor, torch.Tensor]  # (rollout, raw scores (B,), shaped scores (B,))


def select_rows(ro: Rollout, idx: torch.Tensor) -> Rollout:
    """The rows `idx` (long, (b,)) of a rollout."""
    rows = idx.tolist()
    return Rollout(
        prompt_ids=ro.prompt_ids[idx], prompt_mask=ro.prompt_mask[idx], response_ids=ro.response_ids[idx],
        response_mask=ro.response_mask[idx], logprobs=ro.logprobs[idx], prompts=[ro.prompts[i] for i in rows],
        responses=[ro.responses[i] for i in rows], finished=None if ro.finished is None else ro.finished[idx],
    )


def _pad(x: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    extra = width - x.shape[1]
    if extra == 0:
        return x
    fill = torch.full((x.shape[0], extra), value, dtype=x.dtype, device=x.device)
    return torch.cat([fill, x] if left else [x, fill], dim=1)


def concat_rollouts(parts: list[Rollout], pad_id: int) -> Rollout:
    """Rollouts stacked row-wise: prompts left-padded to the longest P, responses right-padded to
    the longest T (padding: pad_id, mask 0, log-prob 0). NLPO action masks are not joined."""
    if any(p.action_mask is not None for p in parts):
        raise ValueError("rollouts with NLPO action masks cannot be joined")
    P = max(p.prompt_ids.shape[1] for p in parts)
    T = max(p.response_ids.shape[1] for p in parts)
    finished = None if any(p.finished is None for p in parts) else torch.cat([p.finished for p in parts])
    return Rollout(
        prompt_ids=torch.cat([_pad(p.prompt_ids, P, pad_id, True) for p in parts]),
        prompt_mask=torch.cat([_pad(p.prompt_mask, P, 0, True) for p in parts]),
        response_ids=torch.cat([_pad(p.response_ids, T, pad_id, False) for p in parts]),
        response_mask=torch.cat([_pad(p.response_mask, T, 0, False) for p in parts]),
        logprobs=torch.cat([_pad(p.logprobs, T, 0.0, False) for p in parts]),
        prompts=[t for p in parts for t in p.prompts], responses=[t for p in parts for t in p.responses],
        finished=finished,
    )


def _group_rows(groups: list[int], group_size: int, device) -> torch.Tensor:
    return torch.tensor([g * group_size + j for g in groups for j in range(group_size)], dtype=torch.long, device=device)


def refill(first: Scored, group_size: int, sample_more: Callable[[], Scored], max_rounds: int,
           pad_id: int) -> tuple[Scored, dict[str, float]]:
    """The batch `first` with its zero-variance groups (judged on the raw scores) replaced by
    groups with differing rewards drawn by `sample_more()` (each call: as many groups as `first`
    holds), at most `max_rounds` calls. Returns ((rollout, raw, shaped), stats)."""
    ro, raw, _ = first
    n = raw.shape[0] // group_size
    draws = [first]
    keep = [(0, g) for g in (~zero_variance_groups(raw, group_size)).nonzero().flatten().tolist()]
    rounds = 0
    while len(keep) < n and rounds < max_rounds:
        rounds += 1
        draw = sample_more()
        draws.append(draw)
        keep += [(len(draws) - 1, g) for g in (~zero_variance_groups(draw[1], group_size)).nonzero().flatten().tolist()]
    filled = min(len(keep), n)
    chosen = keep[:n]
    dropped_first = zero_variance_groups(raw, group_size).nonzero().flatten().tolist()
    chosen += [(0, g) for g in dropped_first[: n - len(chosen)]]  # still short: the first draw's dropped groups
    parts, raws, shaped = [], [], []
    for d, draw in enumerate(draws):
        groups = [g for dd, g in chosen if dd == d]
        if groups:
            idx = _group_rows(groups, group_size, raw.device)
            parts.append(select_rows(draw[0], idx))
            raws.append(draw[1][idx])
            shaped.append(draw[2][idx])
    stats = {"dynamic_sampling/rounds": float(rounds), "dynamic_sampling/filled_fraction": filled / n,
             "dynamic_sampling/responses_sampled": float(sum(d[1].shape[0] for d in draws))}
    return (concat_rollouts(parts, pad_id), torch.cat(raws), torch.cat(shaped)), stats
