"""Launcher for the fused MSDA Triton kernel, with lazy Triton import and input checks.

Triton is imported on the first launch, not at module import, and the jitted kernel is cached
per interpreter mode: `TRITON_INTERPRET=1` is read by `triton.jit`, so a test that sets it
before its first call gets the interpreter even if this module was imported earlier.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any, Sequence

import torch

from teacher.grounding_dino.fast.msda_reference import check_msda_shapes, shape_list

SUPPORTED_VALUE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreter_enabled() -> bool:
    """Whether Triton kernels would run in the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.lru_cache(maxsize=None)
def triton_import_error() -> str | None:
    """None when Triton imports, else the reason (kept so fallbacks can say why)."""
    try:
        importlib.import_module("triton")
        importlib.import_module("triton.language")
    except Exception as exc:  # an ImportError, or a broken install raising anything
        return f"{type(exc).__name__}: {exc}"
    return None


@functools.lru_cache(maxsize=None)
def _jitted_kernel(interpret: bool) -> Any:
    """The kernel wrapped by `triton.jit`; `interpret` is part of the cache key only."""
    import triton

    source = importlib.import_module("teacher.grounding_dino.fast.msda_kernel")
    return triton.jit(source.msda_forward_kernel)


def kernel_supported_on(device: torch.device) -> bool:
    """True where the kernel can run: CUDA with Triton, or CPU when the interpreter is on."""
    if triton_import_error() is not None:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and interpreter_enabled()


def _block_sizes(head_dim: int) -> tuple[int, int, int]:
    """(BLOCK_Q, BLOCK_D, num_warps): about 2048 fp32 accumulators per program."""
    block_d = max(16, 1 << (head_dim - 1).bit_length())
    block_q = max(16, min(128, 2048 // block_d))
    num_warps = 4 if block_q * block_d <= 2048 else 8
    return block_q, block_d, num_warps


def msda_triton(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor | Sequence[Sequence[int]],
    level_start_index: torch.Tensor | Sequence[int] | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    *,
    shapes_list: Sequence[tuple[int, int]] | None = None,
    block_q: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """Fused MSDA forward; same contract as `msda_reference` (output in `value.dtype`).

    `shapes_list` is the host copy of `spatial_shapes` used for the shape checks; pass it when
    `spatial_shapes` is a CUDA tensor so that no device-to-host copy (a sync) happens per call.
    Likewise give `spatial_shapes` and `level_start_index` as tensors on the value's device:
    building them from Python lists costs a host-to-device copy per call.
    `block_q` (queries per program, a power of two) and `num_warps` override the defaults, for
    tuning runs.

    Raises RuntimeError when Triton is unavailable or the device cannot run it, ValueError on
    inconsistent shapes or unsupported dtypes. Locations and weights may be any float dtype;
    they are read and interpolated in fp32.
    """
    device = value.device
    _check_inputs(value, sampling_locations, attention_weights)
    shapes_list = shape_list(spatial_shapes if shapes_list is None else shapes_list)
    check_msda_shapes(value, shapes_list, sampling_locations, attention_weights)
    batch, rows, heads, head_dim = value.shape
    queries, levels, points = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    shapes, starts = _level_tensors(spatial_shapes, shapes_list, level_start_index, levels, device)

    out = torch.empty(batch, queries, heads * head_dim, dtype=value.dtype, device=device)
    if out.numel() == 0:
        return out
    value_c = value.contiguous()
    locations_c = sampling_locations.contiguous()
    weights_c = attention_weights.contiguous()
    default_q, block_d, default_warps = _block_sizes(head_dim)
    block_q = block_q or default_q
    num_warps = num_warps or default_warps
    if block_q & (block_q - 1) or num_warps & (num_warps - 1):
        raise ValueError(f"block_q ({block_q}) and num_warps ({num_warps}) must be powers of two")
    kernel = _jitted_kernel(interpreter_enabled())
    grid = (triton_cdiv(queries, block_q), batch * heads)
    kernel[grid](
        value_c,
        shapes,
        starts,
        locations_c,
        weights_c,
        out,
        queries,
        rows,
        NUM_HEADS=heads,
        HEAD_DIM=head_dim,
        NUM_LEVELS=levels,
        NUM_POINTS=points,
        BLOCK_Q=block_q,
        BLOCK_D=block_d,
        num_warps=num_warps,
    )
    return out


def _check_inputs(value: torch.Tensor, sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> None:
    reason = triton_import_error()
    if reason is not None:
        raise RuntimeError(f"Triton is not usable here ({reason})")
    device = value.device
    if not kernel_supported_on(device):
        raise RuntimeError(
            f"the MSDA Triton kernel runs on CUDA, or on CPU with TRITON_INTERPRET=1; got device {device}"
        )
    if value.dtype not in SUPPORTED_VALUE_DTYPES:
        raise ValueError(f"value dtype {value.dtype} not supported; use one of {SUPPORTED_VALUE_DTYPES}")
    for name, tensor in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must be a float tensor, got {tensor.dtype}")
        if tensor.device != device:
            raise ValueError(f"{name} is on {tensor.device}, value on {device}")


def _level_tensors(spatial_shapes, shapes_list, level_start_index, levels: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per level (height, width) [L, 2] and first row [L], int64 on the device, contiguous."""
    if isinstance(spatial_shapes, torch.Tensor):
        shapes = spatial_shapes.to(device=device, dtype=torch.int64)
    else:
        shapes = torch.as_tensor(shapes_list, dtype=torch.int64, device=device)
    shapes = shapes.reshape(levels, 2).contiguous()
    if level_start_index is None:
        starts = torch.cat((shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]))
    else:
        starts = torch.as_tensor(level_start_index, dtype=torch.int64, device=device).reshape(levels)
    return shapes, starts.contiguous()


def triton_cdiv(a: int, b: int) -> int:
    """Ceil division (kept local so callers need not import Triton)."""
    return -(-a // b)
