"""Modulated deformable convolution (DCNv2) in pure PyTorch, by bilinear gathers.

Matches the official CUDA kernel's sampling: a tap at fractional (y, x) reads the four
neighbours with bilinear weights, neighbours outside the map count as zero, and a tap with
y <= -1, x <= -1, y >= H or x >= W is zero. Offsets are laid out (dy, dx) per kernel tap.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def offsets_as_kernel_reads(offset_mask: torch.Tensor, ho: int, wo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets and sigmoid mask as the official kernel reads them for a ho x wo output.

    `offset_mask` is the raw 27-channel output of the offset conv (N, 27, H, W). When (H, W)
    equals (ho, wo) this is the plain split. Otherwise (GLIP's DyConv feeds the finer level's
    offsets to the coarser level's conv) the kernel, which never checks shapes, reads the
    first 18*ho*wo values of each image's offset buffer and the first 9*ho*wo values of each
    image's mask buffer as if they had the coarser shape; we reproduce exactly that.
    """
    n, _, h, w = offset_mask.shape
    offset_mask = offset_mask.contiguous()
    mask = offset_mask[:, 18:].sigmoid()
    if (h, w) == (ho, wo):
        return offset_mask[:, :18], mask
    # the offset slice shares the 27-channel buffer: image b starts at b * 27*H*W
    offset = offset_mask.reshape(n, -1)[:, : 18 * ho * wo].reshape(n, 18, ho, wo)
    mask = mask.reshape(n, -1)[:, : 9 * ho * wo].reshape(n, 9, ho, wo)
    return offset, mask


def modulated_deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                            weight: torch.Tensor, bias: torch.Tensor | None,
                            stride: int = 1, padding: int = 1) -> torch.Tensor:
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    k = kh * kw
    dtype = x.dtype
    dev = x.device
    base_y = (torch.arange(ho, device=dev) * stride - padding).view(1, 1, ho, 1)
    base_x = (torch.arange(wo, device=dev) * stride - padding).view(1, 1, 1, wo)
    ky = torch.arange(kh, device=dev).repeat_interleave(kw).view(1, k, 1, 1)
    kx = torch.arange(kw, device=dev).repeat(kh).view(1, k, 1, 1)
    off = offset.float().view(n, k, 2, ho, wo)
    py = base_y + ky + off[:, :, 0]  # n, k, ho, wo
    px = base_x + kx + off[:, :, 1]
    inside = (py > -1) & (px > -1) & (py < h) & (px < w)
    y0 = torch.floor(py)
    x0 = torch.floor(px)
    ly, lx = py - y0, px - x0
    y0, x0 = y0.long(), x0.long()
    flat = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
    bidx = torch.arange(n, device=dev).view(n, 1)
    sampled = torch.zeros(n, k * ho * wo, c, device=dev, dtype=dtype)
    for dy, dx, wgt in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx),
                        (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
        yy, xx = y0 + dy, x0 + dx
        valid = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).view(n, -1)
        coef = (wgt * valid * mask.float().view(n, k, ho, wo)).view(n, -1, 1).to(dtype)
        sampled = sampled + flat[bidx, idx] * coef
    cols = sampled.view(n, k, ho * wo, c)
    out = torch.einsum("nklc,ock->nol", cols, weight.view(cout, c, k).to(dtype))
    out = out.view(n, cout, ho, wo)
    if bias is not None:
        out = out + bias.to(dtype).view(1, -1, 1, 1)
    return out


class ModulatedDeformConv(nn.Module):
    """Parameters named like maskrcnn_benchmark's ModulatedDeformConv (`weight`, `bias`)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        if self.weight.device.type != "meta":
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, self.stride, self.padding)
