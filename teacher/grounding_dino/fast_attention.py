"""Swap the Grounding DINO family's multi-scale deformable attention for the fused Triton kernel.

transformers computes MSDA in `MultiScaleDeformableAttention.forward` with one grid_sample per
level, a stack and a weighted sum (it only swaps in a compiled kernel downloaded from the Hub,
which air-gapped GPU nodes cannot do). `install_fast_attention` replaces each such submodule
(the `attn` child of `GroundingDinoMultiscaleDeformableAttention`, its MM Grounding DINO and
Deformable DETR twins) with `FusedMultiScaleDeformableAttention`, which has the same call
signature and no parameters, so weights, `state_dict` and `save_pretrained` are unaffected.

The choice of path is made per call: the kernel on CUDA (or on CPU under `TRITON_INTERPRET=1`,
which is how the tests run it), the original eager module otherwise. If the kernel ever fails
(a Triton compile error on an unexpected GPU, say) the module logs the error once, switches to
eager for good and records it, so a labelling run degrades to slow rather than dying;
`strict=True` re-raises instead (benchmarks and tests use it to make failures visible).
`uninstall_fast_attention` restores the eager modules: the fallback flag for users.
"""

from __future__ import annotations

import collections
import logging
from typing import Sequence

import torch
from torch import nn

from teacher.grounding_dino.fast.msda_triton import kernel_supported_on, msda_triton, triton_import_error

logger = logging.getLogger(__name__)

# Class name shared by grounding_dino, mm_grounding_dino and deformable_detr in transformers;
# all of them have the forward signature wrapped below.
EAGER_CLASS_NAME = "MultiScaleDeformableAttention"


class FusedMultiScaleDeformableAttention(nn.Module):
    """Drop-in for transformers' `MultiScaleDeformableAttention` that runs the Triton kernel.

    `calls` counts how each forward was served ("triton" or "eager"), so a benchmark can prove
    that the kernel really ran. `error` holds the failure that disabled the kernel, if any.
    """

    def __init__(self, eager: nn.Module, *, strict: bool = False) -> None:
        super().__init__()
        self.eager = eager
        self.strict = strict
        self.disabled = False
        self.error: str | None = None
        self.calls: collections.Counter[str] = collections.Counter()

    def forward(
        self,
        value: torch.Tensor,
        value_spatial_shapes: torch.Tensor,
        value_spatial_shapes_list: Sequence[tuple[int, int]],
        level_start_index: torch.Tensor,
        sampling_locations: torch.Tensor,
        attention_weights: torch.Tensor,
        im2col_step: int = 64,
    ) -> torch.Tensor:
        if not self.disabled and kernel_supported_on(value.device):
            try:
                # The device tensors feed the kernel; the host list serves the shape checks,
                # so a call never copies between host and device (no sync per layer).
                out = msda_triton(
                    value,
                    value_spatial_shapes,
                    level_start_index,
                    sampling_locations,
                    attention_weights,
                    shapes_list=value_spatial_shapes_list,
                )
            except Exception as exc:
                if self.strict:
                    raise
                self.disabled = True
                self.error = f"{type(exc).__name__}: {exc}"
                logger.warning("fused MSDA kernel failed, falling back to eager for this module: %s", self.error)
            else:
                self.calls["triton"] += 1
                return out
        self.calls["eager"] += 1
        return self.eager(
            value,
            value_spatial_shapes,
            value_spatial_shapes_list,
            level_start_index,
            sampling_locations,
            attention_weights,
            im2col_step,
        )


def _is_eager_msda(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__name__ == EAGER_CLASS_NAME and cls.__module__.startswith("transformers.")


def install_fast_attention(model: nn.Module, *, strict: bool = False) -> int:
    """Patch every eager MSDA submodule of `model` in place; returns how many were patched.

    Returns 0 (and patches nothing) when Triton cannot be imported: the model stays eager.
    Idempotent: modules already patched are not counted again. Works on the model whatever
    its device; the kernel/eager choice is made per call from the tensors' device.
    """
    reason = triton_import_error()
    if reason is not None:
        logger.warning("Triton unavailable (%s): keeping eager multi-scale deformable attention", reason)
        return 0
    targets = [
        (parent, name, child)
        for parent in model.modules()
        if not isinstance(parent, FusedMultiScaleDeformableAttention)  # its `eager` child stays
        for name, child in parent.named_children()
        if _is_eager_msda(child)
    ]
    for parent, name, child in targets:
        setattr(parent, name, FusedMultiScaleDeformableAttention(child, strict=strict))
    return len(targets)


def uninstall_fast_attention(model: nn.Module) -> int:
    """Put the original eager modules back; returns how many were restored."""
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, FusedMultiScaleDeformableAttention)
    ]
    for parent, name, child in targets:
        setattr(parent, name, child.eager)
    return len(targets)


def fast_attention_report(model: nn.Module) -> dict[str, object]:
    """Calls per path summed over patched modules, plus the errors that disabled any of them."""
    calls: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    patched = 0
    for module in model.modules():
        if isinstance(module, FusedMultiScaleDeformableAttention):
            patched += 1
            calls.update(module.calls)
            if module.error:
                errors.append(module.error)
    return {"patched": patched, "calls": dict(calls), "errors": sorted(set(errors))}
