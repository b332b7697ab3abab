"""Scalar heads: the PPO value head, the reward model (a backbone + a linear head) and the
reward ensemble (M heads on one backbone)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from rlhfkit.algorithms.reward_losses import uncertainty_penalized_score
from rlhfkit.models.loading import (
    EMBEDDED_REWARD_BACKBONE,
    embedded_reward_backbone_dir,
    resolve_policy_path,
)

_RM_META = "rlhfkit_reward_model.json"


class ValueHead(nn.Module):
    """V(s_t) = w·h_t + b on the policy's last hidden state. (B, T, H) -> (B, T).

    Starts at zero so the first advantages are the rewards themselves."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


class RewardModel(nn.Module):
    """r(x, y): a transformer backbone, pooled, then a linear head -> one score per text.

    Encoders (BERT-like, e.g. the embedded MiniLM) read (prompt, response) as a sentence pair
    and mean-pool; decoders read prompt + response and take the last real token.
    `offset` is subtracted from every score; `center()` sets it so that given reference
    responses average 0 (REFERENCES.md, reward models).
    """

    def __init__(self, backbone: nn.Module, tokenizer, pooling: str = "mean", max_length: int = 256, source: str = ""):
        super().__init__()
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean' or 'last', got {pooling!r}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.source = source
        hidden = backbone.config.hidden_size
        self.head = nn.Linear(hidden, 1)
        nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("offset", torch.zeros(()))

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def tokenize(self, prompts: list[str], responses: list[str]) -> dict[str, torch.Tensor]:
        if self.pooling == "mean":
            enc = self.tokenizer(
                prompts, responses, padding=True, truncation="longest_first",
                max_length=self.max_length, return_tensors="pt",
            )
        else:
            self.tokenizer.padding_side = "right"
            # a space between prompt and response keeps the tokenizer from merging across the boundary
            texts = [p + r if not p or p[-1].isspace() else f"{p} {r}" for p, r in zip(prompts, responses)]
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    members = 1
    """Scores per text: 1 here, M for a `RewardEnsemble`."""

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """(B, L) token ids -> (B, H) pooled backbone features (mean or last real token)."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=self.pooling == "last", **kwargs)
        hidden = out.last_hidden_state if self.pooling == "mean" else out.hidden_states[-1]  # (B, L, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        else:
            last = attention_mask.sum(1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return pooled.to(self.head.weight.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """(B, L) token ids -> (B,) scores."""
        return self.head(self.pool(input_ids, attention_mask, **kwargs)).squeeze(-1) - self.offset

    def member_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """(B, L) token ids -> (B, M) scores of each member (M = 1 here)."""
        return self(input_ids, attention_mask, **kwargs).unsqueeze(-1)

    def score_batch(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        return self(**self.tokenize(prompts, responses))

    def member_scores_batch(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """Scores of each member, with gradients. -> (B, M); training losses are averaged over M."""
        return self.member_forward(**self.tokenize(prompts, responses))

    @torch.no_grad()
    def member_scores(self, prompts: list[str], responses: list[str], batch_size: int = 64) -> torch.Tensor:
        """Scores of each member, in batches, without gradients. -> (N, M) float32 on CPU."""
        was_training = self.training
        self.eval()
        out = [self.member_scores_batch(prompts[i : i + batch_size], responses[i : i + batch_size]).float().cpu()
               for i in range(0, len(prompts), batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.members)

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str], batch_size: int = 64) -> torch.Tensor:
        """Scores of many (prompt, response) pairs, in batches, without gradients. -> (N,) float32 on CPU."""
        was_training = self.training
        self.eval()
        out = [self.score_batch(prompts[i : i + batch_size], responses[i : i + batch_size]).float().cpu()
               for i in range(0, len(prompts), batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    @torch.no_grad()
    def center(self, prompts: list[str], responses: list[str]) -> float:
        """Shift scores so the given (reference) responses average 0. Returns the shift applied."""
        mean = float(self.score(prompts, responses).mean())
        self.offset += mean
        return mean

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(path / "backbone")
        self.tokenizer.save_pretrained(path / "backbone")
        torch.save({"head": self.head.state_dict(), "offset": self.offset}, path / "head.pt")
        meta = {"pooling": self.pooling, "max_length": self.max_length, "source": self.source}
        (path / _RM_META).write_text(json.dumps(meta, indent=2))



class RewardEnsemble(RewardModel):
    """M reward heads on one shared backbone: r_m(x, y) = w_m·pool(x, y) + b_m − c_m, m = 1..M.

    score(x, y) = mean_m r_m − λ·std_m r_m − offset (std across members, dividing by M; λ =
    `uncertainty_penalty`, 0 for the plain mean). The heads start from different random weights
    and are trained on the same loss, so they agree where the data pins the reward down and
    drift apart elsewhere: their std is a cheap disagreement signal. The members share the
    backbone (one forward for all of them), so it understates the spread of independently
    trained models. Same interface as `RewardModel` (score, center, save, load_reward_model).
    """

    def __init__(self, backbone: nn.Module, tokenizer, pooling: str = "mean", max_length: int = 256, source: str = "",
                 members: int = 4, uncertainty_penalty: float = 0.0):
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {members}")
        if uncertainty_penalty < 0:
            raise ValueError(f"uncertainty_penalty must be >= 0, got {uncertainty_penalty}")
        super().__init__(backbone, tokenizer, pooling, max_length, source)
        hidden = backbone.config.hidden_size
        self.members = members
        self.uncertainty_penalty = float(uncertainty_penalty)
        self.head = nn.Linear(hidden, members)
        nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("member_offset", torch.zeros(members))  # c_m

    @classmethod
    def on_backbone_of(cls, rm: RewardModel, members: int, uncertainty_penalty: float = 0.0) -> "RewardEnsemble":
        """Fresh heads on `rm`'s backbone and tokenizer (shared, not copied)."""
        return cls(rm.backbone, rm.tokenizer, rm.pooling, rm.max_length, rm.source, members, uncertainty_penalty).to(rm.device)

    def member_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """(B, L) token ids -> (B, M) member scores r_m."""
        return self.head(self.pool(input_ids, attention_mask, **kwargs)) - self.member_offset

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """(B, L) token ids -> (B,) mean − λ·std over members, minus the offset."""
        members = self.member_forward(input_ids, attention_mask, **kwargs)  # (B, M)
        return uncertainty_penalized_score(members, self.uncertainty_penalty) - self.offset

    @torch.no_grad()
    def center(self, prompts: list[str], responses: list[str]) -> float:
        """Centre each member on the references (a pairwise loss leaves each head's constant free,
        and unequal constants would count as disagreement), then the ensemble score, so the
        references average 0. Returns the shift of the ensemble score."""
        members = self.member_scores(prompts, responses)  # (N, M)
        before = float(uncertainty_penalized_score(members, self.uncertainty_penalty).mean()) - float(self.offset)
        shift = members.mean(0)  # (M,)
        after = float(uncertainty_penalized_score(members - shift, self.uncertainty_penalty).mean())
        self.member_offset += shift.to(self.member_offset.device)
        self.offset.fill_(after)
        return before

    def save(self, path: str | Path) -> None:
        super().save(path)
        path = Path(path)
        torch.save({"head": self.head.state_dict(), "offset": self.offset, "member_offset": self.member_offset},
                   path / "head.pt")
        meta = json.loads((path / _RM_META).read_text())
        meta.update(members=self.members, uncertainty_penalty=self.uncertainty_penalty)
        (path / _RM_META).write_text(json.dumps(meta, indent=2))

def _backbone_class(config):
    from transformers import AutoModel, AutoModelForCausalLM

    # Decoder-only models are loaded with their LM class so that hidden states of any
    # architecture come back the same way; encoders as the bare AutoModel.
    is_decoder = getattr(config, "is_decoder", False) or config.model_type in {
        "llama", "gpt2", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi", "phi3", "gpt_neox", "opt",
    }
    return (AutoModelForCausalLM if is_decoder else AutoModel), ("last" if is_decoder else "mean")


def reward_backbone_source(name_or_path: str) -> str:
    """The folder or HF id a fresh reward model's backbone loads from (the embedded MiniLM's
    folder, or as for policies); ModelNotFoundError when the name resolves to nothing. A saved
    rlhfkit reward-model folder is returned as is."""
    if (Path(name_or_path).expanduser() / _RM_META).exists():
        return name_or_path
    if name_or_path == EMBEDDED_REWARD_BACKBONE:
        return str(embedded_reward_backbone_dir())
    return resolve_policy_path(name_or_path)[0]


def load_reward_model(name_or_path: str = EMBEDDED_REWARD_BACKBONE, max_length: int = 256, device: str | torch.device = "cpu") -> RewardModel:
    """A saved rlhfkit reward model folder, or a fresh head on a backbone: the embedded MiniLM
    (`all-minilm-l6-v2`), the embedded policy, a local HF folder or an HF id."""
    from transformers import AutoConfig, AutoTokenizer

    path = Path(name_or_path).expanduser()
    if (path / _RM_META).exists():
        meta = json.loads((path / _RM_META).read_text())
        config = AutoConfig.from_pretrained(path / "backbone")
        cls, _ = _backbone_class(config)
        backbone = cls.from_pretrained(path / "backbone")
        tokenizer = AutoTokenizer.from_pretrained(path / "backbone")
        args = (backbone, tokenizer, meta["pooling"], meta["max_length"], meta.get("source", str(path)))
        if "step_separator" in meta:  # a process reward model (models/process_reward.py)
            from rlhfkit.models.process_reward import ProcessRewardModel  # it subclasses RewardModel: a cycle at import

            model = ProcessRewardModel(*args, separator=meta["step_separator"])
        elif meta.get("members", 1) > 1:
            model = RewardEnsemble(*args, members=meta["members"], uncertainty_penalty=meta.get("uncertainty_penalty", 0.0))
        else:
            model = RewardModel(*args)
        state = torch.load(path / "head.pt", map_location="cpu", weights_only=True)
        model.head.load_state_dict(state["head"])
        model.offset.copy_(state["offset"])
        if "member_offset" in state:
            model.member_offset.copy_(state["member_offset"])
        return model.to(device)
    source = reward_backbone_source(name_or_path)
    config = AutoConfig.from_pretrained(source)
    cls, pooling = _backbone_class(config)
    backbone = cls.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return RewardModel(backbone, tokenizer, pooling, max_length, source=name_or_path).to(device)
