"""Scalar heads: the PPO value head and the reward model (a backbone + a linear head)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from rlhfkit.models.loading import EMBEDDED_REWARD_BACKBONE, embedded_reward_backbone_dir, resolve_policy_path

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
            texts = [p + r for p, r in zip(prompts, responses)]
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """(B, L) token ids -> (B,) scores."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=self.pooling == "last", **kwargs)
        hidden = out.last_hidden_state if self.pooling == "mean" else out.hidden_states[-1]  # (B, L, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        else:
            last = attention_mask.sum(1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.head(pooled.to(self.head.weight.dtype)).squeeze(-1) - self.offset

    def score_batch(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        return self(**self.tokenize(prompts, responses))

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


def _backbone_class(config):
    from transformers import AutoModel, AutoModelForCausalLM

    # Decoder-only models are loaded with their LM class so that hidden states of any
    # architecture come back the same way; encoders as the bare AutoModel.
    is_decoder = getattr(config, "is_decoder", False) or config.model_type in {
        "llama", "gpt2", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi", "phi3", "gpt_neox", "opt",
    }
    return (AutoModelForCausalLM if is_decoder else AutoModel), ("last" if is_decoder else "mean")


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
        model = RewardModel(backbone, tokenizer, meta["pooling"], meta["max_length"], meta.get("source", str(path)))
        state = torch.load(path / "head.pt", map_location="cpu", weights_only=True)
        model.head.load_state_dict(state["head"])
        model.offset.copy_(state["offset"])
        return model.to(device)
    if name_or_path == EMBEDDED_REWARD_BACKBONE:
        source = str(embedded_reward_backbone_dir())
    else:
        source, _ = resolve_policy_path(name_or_path)
    config = AutoConfig.from_pretrained(source)
    cls, pooling = _backbone_class(config)
    backbone = cls.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return RewardModel(backbone, tokenizer, pooling, max_length, source=name_or_path).to(device)
