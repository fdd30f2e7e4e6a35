"""Multi-scale deformable attention (MSDA) in plain PyTorch: the reference the kernel must match.

Deformable DETR / Grounding DINO sample, for every query and head, `points` locations on each
feature level, interpolate the value map bilinearly there and sum the samples weighted by the
attention weights. transformers does this with one `grid_sample(align_corners=False,
padding_mode="zeros")` per level; this module writes the same arithmetic out with explicit
corner gathers, so that it is an independent statement of the semantics (pixel centres at
half-integers, out-of-range corners contribute zero) rather than a copy of the eager code.
"""

from __future__ import annotations

from typing import Sequence

import torch

ShapesLike = torch.Tensor | Sequence[Sequence[int]]


def shape_list(spatial_shapes: ShapesLike) -> list[tuple[int, int]]:
    """(height, width) per level as Python ints; a tensor argument costs a device sync."""
    if isinstance(spatial_shapes, torch.Tensor):
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(int(h), int(w)) for h, w in spatial_shapes]


def check_msda_shapes(
    value: torch.Tensor,
    shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> None:
    """Raise a ValueError naming the mismatch; the kernel has no way to report one itself."""
    if value.dim() != 4:
        raise ValueError(f"value must be [batch, rows, heads, head_dim], got {tuple(value.shape)}")
    batch, rows, heads, _ = value.shape
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            "sampling_locations must be [batch, queries, heads, levels, points, 2], "
            f"got {tuple(sampling_locations.shape)}"
        )
    b, queries, h, levels, points, _ = sampling_locations.shape
    if (b, h) != (batch, heads):
        raise ValueError(f"sampling_locations {tuple(sampling_locations.shape)} do not match value {tuple(value.shape)}")
    if tuple(attention_weights.shape) != (batch, queries, heads, levels, points):
        raise ValueError(
            f"attention_weights must be {(batch, queries, heads, levels, points)}, got {tuple(attention_weights.shape)}"
        )
    if len(shapes) != levels:
        raise ValueError(f"{len(shapes)} spatial shapes for {levels} levels")
    if sum(h_ * w_ for h_, w_ in shapes) != rows:
        raise ValueError(f"spatial shapes {shapes} cover {sum(h_ * w_ for h_, w_ in shapes)} rows, value has {rows}")


def msda_reference(
    value: torch.Tensor,
    spatial_shapes: ShapesLike,
    level_start_index: torch.Tensor | Sequence[int] | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """MSDA forward: returns [batch, queries, heads * head_dim] in `value.dtype`, computed in fp32.

    value: [batch, rows, heads, head_dim], rows = sum of h*w over levels (level-major, row-major).
    spatial_shapes: (height, width) per level. level_start_index: first row of each level
    (recomputed from the shapes when None). sampling_locations: [batch, queries, heads, levels,
    points, 2] as (x, y) in [0, 1] over the level's width/height; values outside sample zero
    padding. attention_weights: [batch, queries, heads, levels, points].
    """
    shapes = shape_list(spatial_shapes)
    check_msda_shapes(value, shapes, sampling_locations, attention_weights)
    batch, _, heads, head_dim = value.shape
    queries, levels, points = sampling_locations.shape[1], sampling_locations.shape[3], sampling_locations.shape[4]
    if level_start_index is None:
        starts = [sum(h * w for h, w in shapes[:i]) for i in range(levels)]
    else:
        starts = [int(s) for s in (level_start_index.tolist() if isinstance(level_start_index, torch.Tensor) else level_start_index)]

    # [batch, heads, rows, head_dim] so one gather per level serves all queries of a head.
    value_bh = value.float().permute(0, 2, 1, 3)
    locations = sampling_locations.float().permute(0, 2, 1, 3, 4, 5)  # [b, heads, q, levels, points, 2]
    weights = attention_weights.float().permute(0, 2, 1, 3, 4)  # [b, heads, q, levels, points]
    out = value_bh.new_zeros(batch, heads, queries, head_dim)

    for level, ((height, width), start) in enumerate(zip(shapes, starts)):
        level_values = value_bh[:, :, start : start + height * width]
        # align_corners=False: location 0 is the left edge of pixel 0, whose centre is at 0.5.
        x = locations[:, :, :, level, :, 0] * width - 0.5
        y = locations[:, :, :, level, :, 1] * height - 0.5
        x0, y0 = torch.floor(x), torch.floor(y)
        fx, fy = x - x0, y - y0
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            cx, cy = x0 + dx, y0 + dy
            corner_weight = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
            inside = (cx >= 0) & (cx <= width - 1) & (cy >= 0) & (cy <= height - 1)
            rows = (cy.clamp(0, height - 1) * width + cx.clamp(0, width - 1)).long()  # [b, heads, q, points]
            gathered = torch.gather(
                level_values,
                2,
                rows.reshape(batch, heads, queries * points, 1).expand(-1, -1, -1, head_dim),
            ).reshape(batch, heads, queries, points, head_dim)
            w = torch.where(inside, weights[:, :, :, level] * corner_weight, 0.0)
            out += (gathered * w.unsqueeze(-1)).sum(dim=3)

    return out.permute(0, 2, 1, 3).reshape(batch, queries, heads * head_dim).to(value.dtype)
