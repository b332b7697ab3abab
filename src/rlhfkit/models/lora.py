"""LoRA adapters (peft) and the reference model they give for free.

With LoRA on, the reference policy is the same module with its adapter disabled — no second
copy of the weights (DESIGN.md §6). Without LoRA, the reference is a frozen deep copy.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _num_layers(model: nn.Module) -> int | None:
    return getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)


def add_lora(model: nn.Module, r: int = 16, alpha: int = 32, dropout: float = 0.0,
             target_modules: tuple[str, ...] | list[str] | None = None, top_layers: int | None = None) -> nn.Module:
    """Wrap `model` with a LoRA adapter (peft). Returns the peft model; only adapter weights train.

    target_modules: module name suffixes; default: the attention and MLP projections present in
    the model. top_layers: put adapters only in the last N transformer blocks — the backward pass
    then stops there, which roughly halves the update's cost on small models.
    """
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if target_modules is None:
        target_modules = [t for t in DEFAULT_TARGETS if t in names] or [t for t in ("c_attn", "c_proj", "c_fc") if t in names]
    missing = [t for t in target_modules if t not in names]
    if missing:
        raise ValueError(f"LoRA target module(s) {missing} not found in {type(model).__name__}")
    layers = None
    if top_layers:
        n = _num_layers(model)
        if n is None:
            raise ValueError("top_layers needs a model config with num_hidden_layers")
        layers = list(range(max(0, n - top_layers), n))
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                        layers_to_transform=layers, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def frozen_copy(model: nn.Module) -> nn.Module:
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


@contextlib.contextmanager
def reference_forward(policy: nn.Module, reference: nn.Module | None):
    """Yield the module that plays the reference (for its log-probs, or to sample the base policy):
    `reference` if given, else the LoRA policy with its adapter disabled for the duration of the
    block (no gradients)."""
    if reference is not None:
        yield reference
        return
    if not is_lora(policy):
        raise ValueError("no reference model: pass one, or use a LoRA policy (its base is the reference)")
    with policy.disable_adapter(), torch.no_grad():
        yield policy


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of `model` as a plain model of its base class would hold them: for a LoRA peft
    model, each adapted weight W + (α/r)·B·A (peft's `get_delta_weight`, the active adapter),
    computed beside the weights rather than by merging in place (merge + unmerge would leave the
    base, i.e. the reference, off by rounding). Tensors are detached; unadapted ones are shared."""
    if not is_lora(model):
        return {name: value.detach() for name, value in model.state_dict().items()}
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer) and module.active_adapters:
            with torch.no_grad():
                deltas[f"{name}.weight"] = sum(module.get_delta_weight(a) for a in module.active_adapters
                                               if a in module.lora_A)
    merged = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        clean = key.replace(".base_layer.", ".")
        merged[clean] = (value + deltas[clean].to(value.dtype)).detach() if clean in deltas else value.detach()
    return merged


def save_merged(model: nn.Module, tokenizer, path) -> None:
    """Save `model` (LoRA merged in, `merged_state_dict`) and its tokenizer as a plain HF model
    folder that `load_policy` and other engines read."""
    base = model.get_base_model() if is_lora(model) else model
    base.save_pretrained(path, state_dict=merged_state_dict(model))
    tokenizer.save_pretrained(path)
