"""Swap slow module implementations inside a loaded model for fused ones that compute the same
function, before training spends most of its time in them. Imports nothing of ours."""

from __future__ import annotations

import torch


def fuse_activations(model: torch.nn.Module) -> int:
    """Replace the tanh-approximated GELU written as Python arithmetic (`NewGELUActivation` of
    GPT-2 / GPT-J / CodeGen, `FastGELUActivation`) with transformers' `GELUTanh`, one fused
    kernel of the same formula 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Hendrycks & Gimpel
    2016); outputs agree to float rounding (≈ 1e-7). The Python version runs eight elementwise
    kernels forward and keeps their outputs for backward: on CPU about 3× the time of the fused
    one. Returns how many modules were swapped; models without them are left untouched."""
    from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

    slow = (NewGELUActivation, FastGELUActivation)
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) in slow:
                setattr(parent, name, GELUTanh())
                swapped += 1
    return swapped
