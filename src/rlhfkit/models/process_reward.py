"""The process reward model (Lightman et al. 2023): the reward model's backbone and linear head,
read at the last token of every step instead of once per text (algorithms/process_reward.py:
the step arithmetic and the loss). Steps are the pieces of a completion between separators
(default a newline); the separator is saved with the model, so a PRM folder given as --reward
splits the policy's completions the way it was trained."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rlhfkit.algorithms.process_reward import step_end_tokens
from rlhfkit.models.heads import _RM_META, RewardModel


class ProcessRewardModel(RewardModel):
    """r(x, step_k) = w·h(last token of step k) + b, the logit of P(step k is correct). Encoders
    read (prompt, completion) as a sentence pair (so a step's token also sees the later steps),
    decoders read prompt + completion causally. Scores are log-odds: the model is not centred."""

    def __init__(self, backbone, tokenizer, pooling: str = "mean", max_length: int = 256, source: str = "",
                 separator: str = "\n"):
        super().__init__(backbone, tokenizer, pooling, max_length, source)
        if not separator:
            raise ValueError("a process reward model needs a non-empty step separator")
        self.separator = separator

    @classmethod
    def on_backbone_of(cls, rm: RewardModel, separator: str) -> "ProcessRewardModel":
        """A PRM on `rm`'s backbone and tokenizer (shared) and a copy of its head."""
        prm = cls(rm.backbone, rm.tokenizer, rm.pooling, rm.max_length, rm.source, separator)
        prm.head.load_state_dict(rm.head.state_dict())
        return prm.to(rm.device)

    def _encode(self, prompts: list[str], completions: list[str]):
        """Tokens of the texts and each token's (start, end) in its completion ((−1, −1): the
        prompt's and special tokens)."""
        common = dict(padding=True, max_length=self.max_length, return_tensors="pt", return_offsets_mapping=True)
        if self.pooling == "mean":
            enc = self.tokenizer(prompts, completions, truncation="longest_first", **common)
            spans = [[(int(s), int(e)) if sid == 1 and e > s else (-1, -1)
                      for (s, e), sid in zip(enc["offset_mapping"][b].tolist(), enc.sequence_ids(b))]
                     for b in range(len(prompts))]
        else:
            self.tokenizer.padding_side = "right"
            prefixes = [p if not p or p[-1].isspace() else p + " " for p in prompts]  # as RewardModel.tokenize
            enc = self.tokenizer([p + c for p, c in zip(prefixes, completions)], truncation=True, **common)
            spans = [[(s - len(p), e - len(p)) if s >= len(p) and e > s else (-1, -1)
                      for s, e in enc["offset_mapping"][b].tolist()] for b, p in enumerate(prefixes)]
        tensors = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return tensors, spans

    def step_logits_batch(self, prompts: list[str], completions: list[str], char_ends: list[list[int]]) -> torch.Tensor:
        """(S,) the logit at each step's last token, steps of every completion in order (S = Σ
        len(char_ends[b])); NaN for a step truncated away by max_length. With gradients."""
        tensors, spans = self._encode(prompts, completions)
        out = self.backbone(**tensors, output_hidden_states=self.pooling == "last")
        hidden = out.last_hidden_state if self.pooling == "mean" else out.hidden_states[-1]  # (B, L, H)
        rows, cols, kept = [], [], []
        for b, ends in enumerate(char_ends):
            for t in step_end_tokens(spans[b], ends):
                kept.append(t >= 0)
                if t >= 0:
                    rows.append(b)
                    cols.append(t)
        logits = self.head(hidden[rows, cols].to(self.head.weight.dtype)).squeeze(-1)  # (S_kept,)
        full = torch.full((len(kept),), float("nan"), dtype=logits.dtype, device=logits.device)
        return full.masked_scatter(torch.tensor(kept, dtype=torch.bool, device=logits.device), logits)

    def save(self, path: str | Path) -> None:
        super().save(path)
        meta_file = Path(path) / _RM_META
        meta = json.loads(meta_file.read_text())
        meta["step_separator"] = self.separator
        meta_file.write_text(json.dumps(meta, indent=2))
