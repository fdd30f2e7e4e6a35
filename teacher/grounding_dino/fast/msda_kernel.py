"""The Triton source of the fused MSDA forward. Importing this module imports Triton.

The kernel uses only Triton builtins (`tl.full`, not `tl.zeros`, which is itself a jitted
helper): the interpreter then works even when Triton was imported before TRITON_INTERPRET was
set, as happens whenever transformers is imported first.

Only `teacher.grounding_dino.fast.msda_triton` imports it, lazily, and wraps `msda_forward_kernel` with
`triton.jit` at that moment: Triton decides between compiling and interpreting
(`TRITON_INTERPRET=1`) when `jit` runs, so decorating here at import time would freeze the
choice for the whole process.

One program computes a block of queries for one (batch, head): it walks levels and points
(runtime loops, to keep the binary small), loads the sampling location and weight of
every query in the block, and gathers the four bilinear corners as [BLOCK_Q, head_dim] tiles
(each row is `head_dim` contiguous elements of the value tensor, so the loads vectorise).
Corners outside the map are masked off, which is grid_sample's zero padding. Accumulation is
fp32 whatever the input dtype; the grid_sample path instead materialises every sample for every
level, stacks them and reduces, which is where its memory traffic goes.

Tensors: value [B, rows, H, D]; locations [B, Q, H, L, P, 2]; weights [B, Q, H, L, P];
out [B, Q, H*D]; shapes [L, 2] (height, width) and starts [L] integer; all contiguous. Batch
offsets are applied to the base pointers in 64-bit; offsets inside one image fit in 32 bits
(rows * heads * head_dim and queries * heads * levels * points * 2 are far below 2**31 for any
detector input), which keeps the per-element address arithmetic cheap. Levels and points are
runtime loops on purpose: unrolling them all (16 x 4 gathers of a [BLOCK_Q, BLOCK_D] tile) made a
2 MB cubin that took minutes to compile.
"""

from __future__ import annotations

import triton.language as tl


def msda_forward_kernel(
    value_ptr,
    shapes_ptr,
    starts_ptr,
    locations_ptr,
    weights_ptr,
    out_ptr,
    num_queries,
    num_rows,
    NUM_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    NUM_LEVELS: tl.constexpr,
    NUM_POINTS: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One block of queries of one (batch, head); the tensors are described in the module docstring."""
    pid_q = tl.program_id(0)
    pid_bh = tl.program_id(1)
    batch = (pid_bh // NUM_HEADS).to(tl.int64)
    head = pid_bh % NUM_HEADS

    offs_q = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_d = tl.arange(0, BLOCK_D)
    q_mask = offs_q < num_queries
    d_mask = offs_d < HEAD_DIM  # all-true when head_dim is a power of two; Triton folds it

    row_stride = NUM_HEADS * HEAD_DIM
    value_base = value_ptr + batch * num_rows * row_stride + head * HEAD_DIM
    lp_per_query = NUM_HEADS * NUM_LEVELS * NUM_POINTS
    weights_base = weights_ptr + batch * num_queries * lp_per_query
    locations_base = locations_ptr + batch * num_queries * lp_per_query * 2
    # Index of (query, head, level 0, point 0) in this image's weights; locations use twice it.
    base_lp = (offs_q * NUM_HEADS + head) * (NUM_LEVELS * NUM_POINTS)

    acc = tl.full([BLOCK_Q, BLOCK_D], 0.0, dtype=tl.float32)
    for level in range(NUM_LEVELS):
        height = tl.load(shapes_ptr + 2 * level).to(tl.int32)
        width = tl.load(shapes_ptr + 2 * level + 1).to(tl.int32)
        start = tl.load(starts_ptr + level).to(tl.int32)
        height_f = height.to(tl.float32)
        width_f = width.to(tl.float32)
        for point in range(NUM_POINTS):
            lp = base_lp + (level * NUM_POINTS + point)
            weight = tl.load(weights_base + lp, mask=q_mask, other=0.0).to(tl.float32)
            loc_x = tl.load(locations_base + 2 * lp, mask=q_mask, other=0.0).to(tl.float32)
            loc_y = tl.load(locations_base + 2 * lp + 1, mask=q_mask, other=0.0).to(tl.float32)
            # align_corners=False: pixel i covers [i, i+1) in units of the map, centre i + 0.5.
            x = loc_x * width_f - 0.5
            y = loc_y * height_f - 0.5
            x0 = tl.floor(x)
            y0 = tl.floor(y)
            fx = x - x0
            fy = y - y0
            for corner in tl.static_range(4):
                dx = corner % 2
                dy = corner // 2
                cx = x0 + dx
                cy = y0 + dy
                wx = fx * dx + (1.0 - fx) * (1 - dx)
                wy = fy * dy + (1.0 - fy) * (1 - dy)
                inside = q_mask & (cx >= 0.0) & (cx <= width_f - 1.0) & (cy >= 0.0) & (cy <= height_f - 1.0)
                # Clamp before the integer cast so that far-away (or non-finite) locations never
                # produce wild offsets; the mask already zeroes their contribution.
                cxi = tl.minimum(tl.maximum(cx, 0.0), width_f - 1.0).to(tl.int32)
                cyi = tl.minimum(tl.maximum(cy, 0.0), height_f - 1.0).to(tl.int32)
                rows = start + cyi * width + cxi
                tile = tl.load(value_base + rows[:, None] * row_stride + offs_d[None, :],
                               mask=inside[:, None] & d_mask[None, :], other=0.0).to(tl.float32)
                scale = tl.where(inside, weight * wx * wy, 0.0)
                acc += scale[:, None] * tile

    out_base = out_ptr + batch * num_queries * row_stride + head * HEAD_DIM
    tl.store(out_base + offs_q[:, None] * row_stride + offs_d[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=q_mask[:, None] & d_mask[None, :])
