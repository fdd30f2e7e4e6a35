"""FPN P3-P7 over Swin stages 2-4, named like the official `backbone.fpn.*`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LastLevelP6P7(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(channels, channels, 3, 2, 1)
        self.p7 = nn.Conv2d(channels, channels, 3, 2, 1)

    def forward(self, p5: torch.Tensor) -> list[torch.Tensor]:
        p6 = self.p6(p5)
        return [p6, self.p7(F.relu(p6))]


class FPN(nn.Module):
    """Top-down FPN; the stride-4 Swin stage is not used (official `fpn_inner1` is absent)."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.levels = [2, 3, 4]
        for idx, cin in zip(self.levels, in_channels[1:]):
            self.add_module(f"fpn_inner{idx}", nn.Conv2d(cin, channels, 1))
            self.add_module(f"fpn_layer{idx}", nn.Conv2d(channels, channels, 3, 1, 1))
        self.top_blocks = LastLevelP6P7(channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c3, c4, c5 = feats[1:]
        last = self.fpn_inner4(c5)
        results = [self.fpn_layer4(last)]
        for feat, idx in ((c4, 3), (c3, 2)):
            lateral = getattr(self, f"fpn_inner{idx}")(feat)
            if lateral.shape[-2:] != last.shape[-2:]:
                last = F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            last = lateral + last
            results.insert(0, getattr(self, f"fpn_layer{idx}")(last))
        return results + self.top_blocks(results[-1])
