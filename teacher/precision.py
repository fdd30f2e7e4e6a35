"""Cast matmul and convolution weights to bf16 once, for inference under bf16 autocast.

Autocast casts every fp32 weight to bf16 at every forward pass (its cache lives only inside one
autocast region); on Grounding DINO at batch 16 those copies are a quarter of the GPU time. The
arithmetic is unchanged: autocast would feed the same bf16 weights to the same kernels.
Normalisation layers and embeddings keep fp32, as autocast runs them in fp32.
"""

from __future__ import annotations

import torch
from torch import nn

from teacher.protocol import PRECISIONS

CAST_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def autocast_dtype(device: str, precision: str) -> torch.dtype | None:
    """The autocast dtype of a teacher on `device` at `precision` (`PRECISIONS`); None is full
    fp32. Only a GPU runs reduced precision: CPU bf16 is slower than fp32 on most CPUs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return torch.bfloat16 if precision == "bf16" and device.startswith("cuda") else None


def precast_weights(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> int:
    """Cast the weights and biases of linear and convolution layers in place; returns the count."""
    count = 0
    for module in model.modules():
        if isinstance(module, CAST_TYPES):
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
            count += 1
    return count
