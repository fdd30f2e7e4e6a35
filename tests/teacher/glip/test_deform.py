"""Pure-PyTorch modulated deformable convolution against plain convolution, hand-made offsets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from teacher.glip.deform import modulated_deform_conv2d, offsets_as_kernel_reads


def _inputs(n=2, c=3, h=7, w=6, cout=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, h, w, generator=g), torch.randn(cout, c, 3, 3, generator=g),
            torch.randn(cout, generator=g))


def test_zero_offsets_unit_mask_is_conv2d() -> None:
    x, wgt, b = _inputs()
    for stride in (1, 2):
        ho, wo = (x.shape[2] + 2 - 3) // stride + 1, (x.shape[3] + 2 - 3) // stride + 1
        off = torch.zeros(2, 18, ho, wo)
        mask = torch.ones(2, 9, ho, wo)
        ours = modulated_deform_conv2d(x, off, mask, wgt, b, stride=stride, padding=1)
        assert torch.allclose(ours, F.conv2d(x, wgt, b, stride=stride, padding=1), atol=1e-5)


def test_integer_offset_shifts_the_input() -> None:
    """dy=+1 on every tap reads the row below: same as convolving the input shifted up
    (except output row 0, whose top tap now reads real row 0 instead of padding)."""
    x, wgt, b = _inputs()
    off = torch.zeros(2, 18, 7, 6)
    off[:, 0::2] = 1.0
    ours = modulated_deform_conv2d(x, off, torch.ones(2, 9, 7, 6), wgt, b)
    shifted = torch.cat([x[:, :, 1:], torch.zeros_like(x[:, :, :1])], dim=2)
    assert torch.allclose(ours[:, :, 1:], F.conv2d(shifted, wgt, b, padding=1)[:, :, 1:], atol=1e-5)


def test_half_pixel_offset_is_bilinear_and_mask_scales() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    wgt = torch.zeros(1, 1, 3, 3)
    wgt[0, 0, 1, 1] = 1.0  # centre tap only
    off = torch.zeros(1, 18, 3, 4)
    off[:, 9] = 0.5  # centre tap (k=4): dx = 0.5
    mask = torch.full((1, 9, 3, 4), 0.5)
    out = modulated_deform_conv2d(x, off, mask, wgt, None)
    expected = torch.tensor([[0.5, 1.5, 2.5, 1.5], [4.5, 5.5, 6.5, 3.5], [8.5, 9.5, 10.5, 5.5]]) * 0.5
    assert torch.allclose(out[0, 0], expected)


def test_far_outside_taps_read_zero() -> None:
    x, wgt, b = _inputs(n=1)
    off = torch.full((1, 18, 7, 6), 100.0)
    out = modulated_deform_conv2d(x, off, torch.ones(1, 9, 7, 6), wgt, b)
    assert torch.allclose(out, b.view(1, -1, 1, 1).expand_as(out))


def test_mismatched_offsets_read_the_buffer_prefix() -> None:
    """A coarser output reads the first 18*ho*wo offset values of each image's 27-channel
    buffer, and the first 9*ho*wo values of each image's mask buffer (official kernel)."""
    n, h, w, ho, wo = 2, 4, 6, 2, 3
    raw = torch.randn(n, 27, h, w)
    off, mask = offsets_as_kernel_reads(raw, ho, wo)
    for b in range(n):
        assert torch.equal(off[b].reshape(-1), raw[b].reshape(-1)[: 18 * ho * wo])
        assert torch.equal(mask[b].reshape(-1), raw[b, 18:].sigmoid().reshape(-1)[: 9 * ho * wo])
    same_off, same_mask = offsets_as_kernel_reads(raw, h, w)
    assert torch.equal(same_off, raw[:, :18]) and torch.equal(same_mask, raw[:, 18:].sigmoid())
