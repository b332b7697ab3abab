"""Token-level credit for online RL (`--reward-granularity token`): a token-level reward model
trained from the sequence scores the reward function gives, whose per-token scores become dense
rewards (algorithms/token_credit.py: the math).

The model is a linear head ŝ_t = w·h_t + b on the frozen reference's last hidden state after
token t (the adapter-disabled base under LoRA): the features do not move while the policy
trains, and the head costs one no-grad forward per iteration. Each iteration it first scores the
rollout (before seeing its labels), the scores are redistributed so that each sequence's token
rewards add up to its score exactly, and then the head takes `steps` Adam steps on the
sum-matching loss (Σ_t ŝ_t − R)² of this batch."""

from __future__ import annotations

import torch

from rlhfkit.algorithms.process_reward import place_step_rewards, step_end_tokens
from rlhfkit.algorithms.token_credit import residual_redistribution, sum_matching_loss, weighted_redistribution
from rlhfkit.models.heads import ValueHead
from rlhfkit.models.lora import reference_forward
from rlhfkit.types import Rollout

DISTRIBUTORS = {"residual": residual_redistribution, "weighted": weighted_redistribution}


class TokenRewardModel:
    """Per-token scores from sequence labels, and the dense rewards made of them."""

    def __init__(self, policy, reference, hidden_size: int, device, learning_rate: float = 1e-3, steps: int = 4,
                 distributor: str = "residual"):
        self.policy, self.reference, self.steps = policy, reference, steps
        self.head = ValueHead(hidden_size).to(device)  # a scalar per position, zero at the start
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=learning_rate)
        self.distribute = DISTRIBUTORS[distributor]
        self.last_loss = float("nan")

    @torch.no_grad()
    def features(self, ro: Rollout, autocast) -> torch.Tensor:
        """(B, T, H) the reference's last hidden state after each response token."""
        T = ro.response_ids.shape[1]
        ids = torch.cat([ro.prompt_ids, ro.response_ids], dim=1)
        attention = torch.cat([ro.prompt_mask.long(), ro.response_mask.long()], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        with autocast(), reference_forward(self.policy, self.reference) as ref:
            out = ref(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False,
                      logits_to_keep=1, output_hidden_states=True)
        return out.hidden_states[-1][:, -T:].float()

    def dense(self, ro: Rollout, mask: torch.Tensor, raw_scores: torch.Tensor, autocast) -> torch.Tensor:
        """(B, T) token rewards adding up to raw_scores (B,) over `mask`; then one fit on this batch."""
        hidden = self.features(ro, autocast)
        with torch.no_grad():
            dense = self.distribute(self.head(hidden), mask, raw_scores)
        for _ in range(self.steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = sum_matching_loss(self.head(hidden), mask, raw_scores)
            loss.backward()
            self.optimizer.step()
        self.last_loss = float(loss.detach()) if self.steps else float("nan")
        return dense

    def stats(self) -> dict[str, float]:
        return {"token_credit/fit_loss": self.last_loss}


def response_char_spans(tokenizer, ids: list[int]) -> list[tuple[int, int]]:
    """Each response token's (start, end) in the decoded response as the sampler returns it
    (special tokens skipped, leading whitespace stripped), from the lengths of the decoded
    prefixes, each token's span starting at its first non-space character; (−1, −1) for a token
    that adds no visible character."""
    full = tokenizer.decode(ids, skip_special_tokens=True)
    lead = len(full) - len(full.lstrip())
    spans, before = [], ""
    for t in range(len(ids)):
        after = tokenizer.decode(ids[: t + 1], skip_special_tokens=True)
        piece = after[len(before):]
        start = len(before) + len(piece) - len(piece.lstrip()) - lead  # the token's own characters, not the space before
        end = len(after) - lead
        spans.append((max(start, 0), end) if end > max(start, 0) else (-1, -1))
        before = after
    return spans


class StepCredit:
    """Dense rewards from a process reward model in --reward (`--reward-granularity token`): the
    reward's steps (`WeightedSum.step_rewards`: a PRM's log P(step correct) per step, the other
    components on the last character) each land on the policy token holding the step's last
    character, so a sequence's token rewards add up to its score exactly."""

    def __init__(self, reward_fn, tokenizer):
        self.reward_fn, self.tokenizer = reward_fn, tokenizer
        self.last: list[list[tuple[int, float]]] = []

    def scores(self, ro: Rollout) -> list[float]:
        """(B,) each response's score, the sum of its step rewards (kept for `dense`)."""
        self.last = self.reward_fn.step_rewards(ro.prompts, ro.responses)
        return [sum(r for _, r in row) for row in self.last]

    def dense(self, ro: Rollout, mask: torch.Tensor, raw_scores: torch.Tensor, autocast) -> torch.Tensor:
        """(B, T) each step's reward on its last token (a step that maps to no token: the last one)."""
        positions = []
        for b, row in enumerate(self.last):
            n = int(ro.response_mask[b].sum())
            spans = response_char_spans(self.tokenizer, ro.response_ids[b, :n].tolist())
            positions.append([t if t >= 0 else max(n - 1, 0) for t in step_end_tokens(spans, [e for e, _ in row])])
        return place_step_rewards(positions, [[r for _, r in row] for row in self.last], mask.shape[1], mask.device)

    def stats(self) -> dict[str, float]:
        return {"token_credit/steps_mean": sum(len(row) for row in self.last) / max(len(self.last), 1)}
