"""The fused MSDA Triton kernel against the PyTorch reference, run by Triton's CPU interpreter.

Each kernel program costs about half a second in the interpreter, so the cases keep
batch * heads * query-blocks small; the arithmetic paths (levels, points, corners, padding,
dtypes, batch and head offsets) are what matter, not size.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from transformers.models.grounding_dino.modeling_grounding_dino import MultiScaleDeformableAttention  # noqa: E402

from teacher.grounding_dino.fast.msda_reference import msda_reference  # noqa: E402
from teacher.grounding_dino.fast.msda_triton import kernel_supported_on, msda_triton  # noqa: E402


@pytest.fixture
def interpret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def make_inputs(
    seed: int,
    *,
    batch: int,
    queries: int,
    heads: int,
    head_dim: int,
    shapes: list[tuple[int, int]],
    points: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random MSDA inputs; about a quarter of the locations fall outside [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    rows = sum(h * w for h, w in shapes)
    levels = len(shapes)
    value = torch.randn(batch, rows, heads, head_dim, generator=gen)
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=gen) * 1.5 - 0.25
    # A few exact edges and far-away points: the zero-padding corner cases.
    flat = locations.view(-1)
    flat[:: 7] = 0.0
    flat[3 :: 11] = 1.0
    flat[5 :: 13] = -3.0
    flat[6 :: 17] = 4.5
    weights = torch.randn(batch, queries, heads, levels, points, generator=gen)
    spatial = torch.tensor(shapes, dtype=torch.long)
    starts = torch.cat((spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]))
    return value.to(dtype), spatial, starts, locations.to(dtype), weights.to(dtype)


# (seed, batch, queries, heads, head_dim, shapes, points)
CASES = [
    (0, 1, 7, 1, 8, [(5, 6)], 1),
    (1, 2, 13, 1, 16, [(6, 5), (3, 3)], 2),
    (2, 1, 9, 2, 32, [(4, 7), (2, 4), (1, 2)], 3),
    (3, 1, 20, 1, 24, [(7, 7), (4, 4), (2, 2), (1, 1)], 4),
    (4, 2, 5, 2, 4, [(1, 1), (3, 2), (2, 5), (6, 1)], 2),
]


@pytest.mark.parametrize("seed,batch,queries,heads,head_dim,shapes,points", CASES)
def test_kernel_matches_reference_fp32(interpret, seed, batch, queries, heads, head_dim, shapes, points) -> None:
    value, spatial, starts, locations, weights = make_inputs(
        seed, batch=batch, queries=queries, heads=heads, head_dim=head_dim, shapes=shapes, points=points
    )
    expected = msda_reference(value, spatial, starts, locations, weights)
    got = msda_triton(value, spatial, starts, locations, weights)
    assert got.shape == (batch, queries, heads * head_dim)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_kernel_several_query_blocks(interpret) -> None:
    """Small blocks force several programs along the queries, the last one partly masked."""
    value, spatial, starts, locations, weights = make_inputs(
        9, batch=2, queries=37, heads=2, head_dim=8, shapes=[(4, 5), (2, 3)], points=1
    )
    expected = msda_reference(value, spatial, starts, locations, weights)
    got = msda_triton(value, spatial, starts, locations, weights, block_q=16, num_warps=1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="powers of two"):
        msda_triton(value, spatial, starts, locations, weights, block_q=24)


@pytest.mark.parametrize("seed,batch,queries,heads,head_dim,shapes,points", CASES[1:4])
def test_reference_matches_transformers_grid_sample(seed, batch, queries, heads, head_dim, shapes, points) -> None:
    value, spatial, starts, locations, weights = make_inputs(
        seed, batch=batch, queries=queries, heads=heads, head_dim=head_dim, shapes=shapes, points=points
    )
    eager = MultiScaleDeformableAttention()(value, spatial, shapes, starts, locations, weights, 64)
    torch.testing.assert_close(msda_reference(value, spatial, starts, locations, weights), eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_kernel_low_precision_inputs(interpret, dtype, tol) -> None:
    shapes = [(6, 5), (3, 3), (2, 1)]
    value, spatial, starts, locations, weights = make_inputs(
        7, batch=2, queries=11, heads=1, head_dim=16, shapes=shapes, points=2, dtype=dtype
    )
    got = msda_triton(value, spatial, starts, locations, weights)
    assert got.dtype == dtype
    # Same low-precision inputs, fp32 arithmetic: only the final rounding may differ. (Triton's
    # interpreter truncates fp32 -> bf16 where compiled kernels round to nearest, so allow a
    # couple of ulps rather than demanding equality.)
    torch.testing.assert_close(got.float(), msda_reference(value, spatial, starts, locations, weights).float(), rtol=tol, atol=tol)
    # And close to the fp32 computation on the unrounded inputs, within the input quantisation.
    value32, _, _, locations32, weights32 = make_inputs(
        7, batch=2, queries=11, heads=1, head_dim=16, shapes=shapes, points=2
    )
    full = msda_reference(value32, spatial, starts, locations32, weights32)
    assert (got.float() - full).norm() / full.norm() < 10 * tol


def test_kernel_mixed_dtypes_and_strided_inputs(interpret) -> None:
    """Autocast hands the kernel bf16 values with fp32 locations/weights, sometimes as views."""
    shapes = [(5, 4), (2, 3)]
    value, spatial, starts, locations, weights = make_inputs(
        11, batch=1, queries=6, heads=2, head_dim=8, shapes=shapes, points=2
    )
    value_bf16 = value.bfloat16()
    locations_strided = locations.transpose(1, 2).contiguous().transpose(1, 2)
    assert not locations_strided.is_contiguous()
    got = msda_triton(value_bf16, spatial, None, locations_strided, weights)
    expected = msda_reference(value_bf16, shapes, None, locations, weights)
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_kernel_rejects_bad_inputs(interpret) -> None:
    value, spatial, starts, locations, weights = make_inputs(
        0, batch=1, queries=3, heads=1, head_dim=8, shapes=[(3, 3)], points=1
    )
    with pytest.raises(ValueError, match="attention_weights"):
        msda_triton(value, spatial, starts, locations, weights[..., :0])
    with pytest.raises(ValueError, match="rows"):
        msda_triton(value[:, :5], spatial, starts, locations, weights)
    with pytest.raises(ValueError, match="dtype"):
        msda_triton(value.double(), spatial, starts, locations, weights)
    with pytest.raises(ValueError, match="float"):
        msda_triton(value, spatial, starts, locations.long(), weights)


def test_kernel_refuses_cpu_without_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    value, spatial, starts, locations, weights = make_inputs(
        0, batch=1, queries=3, heads=1, head_dim=8, shapes=[(3, 3)], points=1
    )
    assert not kernel_supported_on(torch.device("cpu"))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        msda_triton(value, spatial, starts, locations, weights)


def test_kernel_compiles_for_hopper_with_vector_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ahead-of-time compile for sm_90 (H100/H200) without a GPU, as the autocast call site uses it.

    The interpreter accepts code that the real compiler rejects; this catches that on CPU, and
    checks that the value rows are read with 16-byte vector loads (the kernel's main cost).
    """
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from teacher.grounding_dino.fast import msda_kernel

    kernel = triton.jit(msda_kernel.msda_forward_kernel)
    signature = {
        "value_ptr": "*bf16", "shapes_ptr": "*i64", "starts_ptr": "*i64", "locations_ptr": "*fp32",
        "weights_ptr": "*fp32", "out_ptr": "*bf16", "num_queries": "i32", "num_rows": "i32",
        "NUM_HEADS": "constexpr", "HEAD_DIM": "constexpr", "NUM_LEVELS": "constexpr",
        "NUM_POINTS": "constexpr", "BLOCK_Q": "constexpr", "BLOCK_D": "constexpr",
    }
    constants = {"NUM_HEADS": 8, "HEAD_DIM": 32, "NUM_LEVELS": 4, "NUM_POINTS": 4, "BLOCK_Q": 64, "BLOCK_D": 32}
    # Torch allocations are 16-byte aligned, which Triton assumes for pointer arguments at launch.
    aligned = {(i,): [["tt.divisibility", 16]] for i in range(6)}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=aligned)
    try:
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    except (RuntimeError, FileNotFoundError) as exc:  # no NVIDIA backend/ptxas in this Triton build
        if "ptxas" in str(exc) or "backend" in str(exc).lower():
            pytest.skip(f"cannot compile for CUDA here: {exc}")
        raise
    assert "ld.global.v4" in compiled.asm["ptx"]
