"""ILQL's heads on a causal LM and the policy they decode (Snell et al. 2022; algorithms/ilql.py).

`ILQLHeads`: a V head (the PPO `ValueHead`, H -> 1) and one or two Q heads (H -> V, one Q value
per vocabulary token), each Q head with a frozen target copy that follows it by Polyak
averaging. `ILQLPolicy` wraps the LM and the heads into a module that every sampler and
evaluator can use as a policy: its forward returns the advantage-perturbed logits
log π_β + β·(min_i Q̂_i − V) (top-k cut), with the LM's KV cache, so `generate`, `compare` and
`eval` sample and score it like any causal LM. A saved ILQL run (`save_ilql`) is a model folder
plus the heads; `load_policy` gives back an `ILQLPolicy` for such a folder.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rlhfkit.algorithms.ilql import perturbed_logits
from rlhfkit.algorithms.logprobs import selected_token_logprobs
from rlhfkit.models.forward import _one_pass, cache_argument, returned_cache
from rlhfkit.models.heads import ValueHead

ILQL_META = "rlhfkit_ilql.json"
ILQL_HEADS = "ilql_heads.pt"


class ILQLHeads(nn.Module):
    """V(s) and Q_i(s, ·) on the LM's last hidden state: (…, H) -> V (…) and Q (…, V) per head.

    The V head starts at zero (the PPO value head); each Q head starts near zero from its own
    random draw (zero twins would get equal updates and their minimum would be no minimum), so the
    first decoding is the LM's own distribution up to a tiny perturbation; the target Q heads start
    as copies and receive no gradient."""

    def __init__(self, hidden_size: int, vocab_size: int, two_qs: bool = True):
        super().__init__()
        self.v_head = ValueHead(hidden_size)
        self.q_heads = nn.ModuleList(self._q_head(hidden_size, vocab_size) for _ in range(2 if two_qs else 1))
        self.target_q_heads = copy.deepcopy(self.q_heads)
        self.target_q_heads.requires_grad_(False)

    @staticmethod
    def _q_head(hidden_size: int, vocab_size: int) -> nn.Linear:
        head = nn.Linear(hidden_size, vocab_size)
        nn.init.normal_(head.weight, std=1e-3 / hidden_size**0.5)
        nn.init.zeros_(head.bias)
        return head

    def _cast(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.to(self.v_head.linear.weight.dtype)

    def values(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.v_head(hidden)

    def q_values(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        return [q(self._cast(hidden)) for q in self.q_heads]

    def target_q_values(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return [q(self._cast(hidden)) for q in self.target_q_heads]

    def target_q_taken(self, hidden: torch.Tensor, actions: torch.Tensor) -> list[torch.Tensor]:
        """Q̂_i(s_t, a_t) of given actions only: (B, T, H), (B, T) -> (B, T) per target head, from
        the actions' rows of each head's weight (no (B, T, V) product: training reads no more)."""
        hidden = self._cast(hidden)
        with torch.no_grad():
            return [(hidden * q.weight[actions]).sum(-1) + q.bias[actions] for q in self.target_q_heads]

    def online_parameters(self) -> list[nn.Parameter]:
        return list(self.v_head.parameters()) + list(self.q_heads.parameters())

    def target_parameters(self) -> list[torch.Tensor]:
        return list(self.target_q_heads.parameters())


@dataclass
class ILQLForward:
    """One training pass: (B, T) tensors (0 on response padding; the target heads' Q̂ of the data's
    actions) and one (B, T, V) per online Q head."""

    action_logprobs: torch.Tensor
    values: torch.Tensor
    q_all: list[torch.Tensor]
    target_q_taken: list[torch.Tensor]


def ilql_forward(lm, heads: ILQLHeads, prompt_ids, prompt_mask, response_ids, response_mask) -> ILQLForward:
    """One pass of `lm` over [prompt | response] (prompt (B, P) left-padded, response (B, T)
    right-padded): log π_β(a_t | s_t) of the response tokens, V(s_t) and every Q(s_t, ·) from the
    hidden state before each response token."""
    logits, layout, hidden = _one_pass(lm, prompt_ids, prompt_mask, response_ids, response_mask, want_hidden=True)
    logprobs = layout.place(selected_token_logprobs(logits, layout.gather(response_ids)))  # (B, T)
    mask = response_mask.to(torch.float32)
    return ILQLForward(action_logprobs=logprobs, values=heads.values(hidden).float() * mask,
                       q_all=heads.q_values(hidden), target_q_taken=heads.target_q_taken(hidden, response_ids))


@dataclass
class ILQLOutput:
    """What `ILQLPolicy.forward` returns: the fields the samplers read of a causal LM's output."""

    logits: torch.Tensor
    past_key_values: object = None
    hidden_states: tuple | None = None
    cache: object = None


class ILQLPolicy(nn.Module):
    """A causal LM decoded with ILQL's advantage-perturbed logits (algorithms/ilql.py):
    logits = log π_β(a|s) + β·(min_i Q̂_i(s, a) − V(s)), cut to the top k (0: no cut)."""

    def __init__(self, lm: nn.Module, heads: ILQLHeads, beta: float = 1.0, top_k: int = 20):
        super().__init__()
        self.lm, self.heads, self.beta, self.top_k = lm, heads, float(beta), int(top_k)

    @property
    def config(self):
        return self.lm.config

    @property
    def generation_config(self):
        return getattr(self.lm, "generation_config", None)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False,
                logits_to_keep=0, output_hidden_states=False, **kwargs) -> ILQLOutput:
        if past_key_values is not None:
            kwargs[cache_argument(self.lm)] = past_key_values
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=use_cache,
                      logits_to_keep=logits_to_keep, output_hidden_states=True, **kwargs)
        hidden = out.hidden_states[-1]  # (B, L, H)
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]  # the positions the logits were kept for
        q = torch.stack(self.heads.target_q_values(hidden)).min(0).values  # (B, L', V)
        logits = perturbed_logits(out.logits, q, self.heads.values(hidden), self.beta, self.top_k)
        return ILQLOutput(logits=logits, past_key_values=returned_cache(out) if use_cache else None,
                          hidden_states=out.hidden_states if output_hidden_states else None)


def save_ilql(path: str | Path, heads: ILQLHeads, beta: float, top_k: int) -> None:
    """Write the heads and the decoding settings beside a saved LM folder (`path`)."""
    path = Path(path)
    torch.save(heads.state_dict(), path / ILQL_HEADS)
    meta = {"beta": beta, "top_k": top_k, "two_qs": len(heads.q_heads) == 2,
            "hidden_size": heads.v_head.linear.in_features, "vocab_size": heads.q_heads[0].out_features}
    (path / ILQL_META).write_text(json.dumps(meta, indent=2))


def is_ilql_folder(path: str | Path) -> bool:
    return (Path(path) / ILQL_META).exists()


def wrap_ilql(lm: nn.Module, path: str | Path) -> ILQLPolicy:
    """The `ILQLPolicy` of LM `lm` loaded from folder `path`, with the heads saved there."""
    meta = json.loads((Path(path) / ILQL_META).read_text())
    heads = ILQLHeads(meta["hidden_size"], meta["vocab_size"], meta["two_qs"])
    heads.load_state_dict(torch.load(Path(path) / ILQL_HEADS, map_location="cpu", weights_only=True))
    device = next(lm.parameters()).device
    return ILQLPolicy(lm, heads.to(device), meta["beta"], meta["top_k"]).eval()
