"""The MSDA kernel alone on one device: error against the reference, time against eager.

A model-level comparison cannot isolate the kernel once the two-stage top-k of a random model
flips between precisions; this can. Used by `bench/gpu_teacher.py` at the encoder's call shape,
with the inputs that autocast produces there (bf16 values, fp32 locations, softmaxed weights),
and to time a few launch configurations so the defaults can be tuned from one GPU run.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from teacher.grounding_dino.fast.msda_reference import msda_reference
from teacher.grounding_dino.fast.msda_triton import kernel_supported_on, msda_triton


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_ms(call: Callable[[], torch.Tensor], device: torch.device, iters: int) -> float:
    call()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        call()
    _sync(device)
    return 1e3 * (time.perf_counter() - t0) / iters


def _rel_l2(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-12))


def msda_selfcheck(
    device: torch.device,
    shapes: Sequence[tuple[int, int]],
    *,
    heads: int,
    head_dim: int,
    points: int,
    batch: int,
    iters: int,
    configs: Sequence[tuple[int, int]] = (),
) -> dict[str, object]:
    """Encoder-style self-attention (queries = rows); `configs` are (block_q, num_warps) to time."""
    from transformers.models.grounding_dino.modeling_grounding_dino import MultiScaleDeformableAttention

    if not kernel_supported_on(device):
        return {"skipped": f"kernel not supported on {device} (CUDA, or CPU with TRITON_INTERPRET=1)"}
    shapes = [(int(h), int(w)) for h, w in shapes]
    levels, rows = len(shapes), sum(h * w for h, w in shapes)
    gen = torch.Generator(device=device).manual_seed(0)
    value = torch.randn(batch, rows, heads, head_dim, device=device, generator=gen).bfloat16()
    locations = torch.rand(batch, rows, heads, levels, points, 2, device=device, generator=gen) * 1.2 - 0.1
    weights = torch.randn(batch, rows, heads, levels * points, device=device, generator=gen).softmax(-1)
    weights = weights.view(batch, rows, heads, levels, points)
    spatial = torch.tensor(shapes, device=device)
    starts = torch.cat((spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]))

    def kernel(**overrides: int) -> torch.Tensor:
        return msda_triton(value, spatial, starts, locations, weights, shapes_list=shapes, **overrides)

    eager = MultiScaleDeformableAttention()

    def eager_amp() -> torch.Tensor:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            return eager(value, spatial, shapes, starts, locations, weights, 64)

    got = kernel()
    ref = msda_reference(value, shapes, starts, locations, weights)
    result: dict[str, object] = {
        "shape": [batch, rows, heads, head_dim, levels, points],
        "rel_l2_vs_reference": _rel_l2(got, ref),
        "max_abs_err": float((got.float() - ref.float()).abs().max()),
        "rel_l2_vs_eager_amp": _rel_l2(got, eager_amp()),
        "kernel_ms": _time_ms(kernel, device, iters),
        "eager_amp_ms": _time_ms(eager_amp, device, iters),
    }
    result["speedup"] = result["eager_amp_ms"] / result["kernel_ms"]
    for block_q, warps in configs:
        key = f"kernel_ms_q{block_q}_w{warps}"
        try:
            result[key] = _time_ms(lambda: kernel(block_q=block_q, num_warps=warps), device, iters)
        except Exception as exc:  # one bad configuration must not hide the others
            result[key] = f"{type(exc).__name__}: {exc}"
    return result
