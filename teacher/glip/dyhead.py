"""GLIP's fused DyHead: per block VLFuse -> BERT layer -> DyConv, then the ATSS grounding
head (dot-product token logits, box regression with per-level scales, centerness).

Module names follow `rpn.head.*` of the official checkpoints.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from teacher.glip.config import GlipConfig
from teacher.glip.deform import ModulatedDeformConv, offsets_as_kernel_reads
from teacher.glip.fusion import BertFusionLayer, VLFuse


def h_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3) / 6


class _HSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return h_sigmoid(x)


class DyReLU(nn.Module):
    """Dynamic ReLU (K=2 pieces with bias): max(a1*x+b1, a2*x+b2), coefficients from a pooled MLP."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.channels = channels
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels * 4), _HSigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        y = self.fc(x.mean(dim=(2, 3))).view(b, 4 * c, 1, 1)
        a1, b1, a2, b2 = torch.split(y, c, dim=1)
        a1 = (a1 - 0.5) * 2.0 + 1.0
        a2 = (a2 - 0.5) * 2.0
        b1 = b1 - 0.5
        b2 = b2 - 0.5
        return torch.maximum(x * a1 + b1, x * a2 + b2)


class Conv3x3Norm(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv = ModulatedDeformConv(cin, cout, 3, stride, 1)
        self.bn = nn.GroupNorm(groups, cout)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x, offset, mask))


class DyConv(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.DyConv = nn.ModuleList([Conv3x3Norm(channels, channels, 1, groups),
                                     Conv3x3Norm(channels, channels, 1, groups),
                                     Conv3x3Norm(channels, channels, 2, groups)])
        self.AttnConv = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, 1, 1), nn.ReLU())
        self.relu = DyReLU(channels)
        self.offset = nn.Conv2d(channels, 27, 3, 1, 1)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for level, feat in enumerate(feats):
            offset_mask = self.offset(feat)
            h, w = feat.shape[-2:]
            off, mask = offsets_as_kernel_reads(offset_mask, h, w)
            temp = [self.DyConv[1](feat, off, mask)]
            if level > 0:
                temp.append(self.DyConv[2](feats[level - 1], off, mask))
            if level < len(feats) - 1:
                coarse = feats[level + 1]
                c_off, c_mask = offsets_as_kernel_reads(offset_mask, *coarse.shape[-2:])
                up = self.DyConv[0](coarse, c_off, c_mask)
                temp.append(F.interpolate(up, size=(h, w), mode="bilinear", align_corners=True))
            stacked = torch.stack(temp)
            attn = h_sigmoid(torch.stack([self.AttnConv(t) for t in temp]))
            out.append(self.relu((stacked * attn).mean(dim=0)))
        return out


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class VLDyHead(nn.Module):
    def __init__(self, cfg: GlipConfig) -> None:
        super().__init__()
        ch = cfg.head_channels
        bert = cfg.bert
        tower: list[nn.Module] = []
        for _ in range(cfg.num_fused_blocks):
            tower.append(VLFuse(ch, cfg.lang_dim, cfg.fusion_embed_dim, cfg.fusion_num_heads))
            tower.append(BertFusionLayer(cfg.lang_dim, bert["num_attention_heads"],
                                         bert["intermediate_size"], bert.get("layer_norm_eps", 1e-12)))
            tower.append(DyConv(ch, cfg.group_norm_groups))
        self.dyhead_tower = nn.ModuleList(tower)
        self.cls_logits = nn.Conv2d(ch, cfg.num_classes, 1)
        self.bbox_pred = nn.Conv2d(ch, 4, 1)
        self.centerness = nn.Conv2d(ch, 1, 1)
        self.dot_product_projection_text = nn.Linear(cfg.lang_dim, ch)
        self.log_scale = nn.Parameter(torch.zeros(1))
        self.bias_lang = nn.Parameter(torch.zeros(cfg.lang_dim))
        self.bias0 = nn.Parameter(torch.full((1,), -math.log(99.0)))
        self.scales = nn.ModuleList(Scale() for _ in range(5))

    def forward(self, feats: list[torch.Tensor], lang: torch.Tensor, lang_mask: torch.Tensor,
                with_intermediates: bool = False) -> dict[str, list[torch.Tensor]]:
        for i in range(0, len(self.dyhead_tower), 3):
            feats, lang = self.dyhead_tower[i](feats, lang, lang_mask)
            lang = self.dyhead_tower[i + 1](lang, lang_mask)
            feats = self.dyhead_tower[i + 2](feats)
        emb = F.normalize(lang, p=2, dim=-1)
        tokens = self.dot_product_projection_text(emb / 2.0)
        token_bias = emb @ self.bias_lang + self.bias0  # b, T
        out: dict[str, list[torch.Tensor]] = {"bbox_reg": [], "centerness": [], "dot_product_logits": []}
        if with_intermediates:
            out["logits"] = []
            out["fused_language"] = [lang]
        scale = self.log_scale.exp()
        for level, feat in enumerate(feats):
            if with_intermediates:
                out["logits"].append(self.cls_logits(feat))
            out["bbox_reg"].append(self.scales[level](self.bbox_pred(feat)))
            out["centerness"].append(self.centerness(feat))
            queries = feat.flatten(2).transpose(1, 2)
            logit = (queries @ tokens.transpose(-1, -2)) / scale + token_bias.unsqueeze(1)
            out["dot_product_logits"].append(logit.clamp(-50000.0, 50000.0))
        return out
