"""The language side of GLIP's fused DyHead: bi-directional image-text attention and the
BERT layers that follow it (module names as in `rpn.head.dyhead_tower.*`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_CLAMP = 50000.0  # the official fp16 guard, kept so numbers stay identical


class BiMultiHeadAttention(nn.Module):
    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.v_proj = nn.Linear(v_dim, embed_dim)
        self.l_proj = nn.Linear(l_dim, embed_dim)
        self.values_v_proj = nn.Linear(v_dim, embed_dim)
        self.values_l_proj = nn.Linear(l_dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, v_dim)
        self.out_l_proj = nn.Linear(embed_dim, l_dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, v: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, nv, _ = v.shape
        q = self._heads(self.v_proj(v) * self.scale)
        k = self._heads(self.l_proj(lang))
        val_v = self._heads(self.values_v_proj(v))
        val_l = self._heads(self.values_l_proj(lang))
        attn = (q @ k.transpose(-1, -2)).clamp(-_CLAMP, _CLAMP)  # b, h, nv, nl
        attn_l = attn.transpose(-1, -2)
        attn_l = (attn_l - attn_l.amax(dim=-1, keepdim=True)).clamp(-_CLAMP, _CLAMP).softmax(-1)
        invalid = (lang_mask == 0).view(b, 1, 1, -1)
        attn_v = attn.masked_fill(invalid, -9e15).softmax(-1)
        out_v = (attn_v @ val_l).transpose(1, 2).reshape(b, nv, -1)
        out_l = (attn_l @ val_v).transpose(1, 2).reshape(b, lang.shape[1], -1)
        return self.out_v_proj(out_v), self.out_l_proj(out_l)


class BiAttentionBlock(nn.Module):
    """Pre-LN bi-attention with layer scale; the residual is added to the *normed* inputs."""

    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(v_dim)
        self.layer_norm_l = nn.LayerNorm(l_dim)
        self.attn = BiMultiHeadAttention(v_dim, l_dim, embed_dim, num_heads)
        self.gamma_v = nn.Parameter(torch.ones(v_dim) / 8)
        self.gamma_l = nn.Parameter(torch.ones(l_dim) / 8)

    def forward(self, visual: list[torch.Tensor], lang: torch.Tensor,
                lang_mask: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        shapes = [f.shape for f in visual]
        flat = torch.cat([f.flatten(2).transpose(1, 2) for f in visual], dim=1)
        v = self.layer_norm_v(flat)
        lang = self.layer_norm_l(lang)
        dv, dl = self.attn(v, lang, lang_mask)
        v = (v + self.gamma_v * dv).transpose(1, 2)
        lang = lang + self.gamma_l * dl
        out, start = [], 0
        for b, c, h, w in shapes:
            out.append(v[:, :, start:start + h * w].reshape(b, -1, h, w))
            start += h * w
        return out, lang


class VLFuse(nn.Module):
    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.b_attn = BiAttentionBlock(v_dim, l_dim, embed_dim, num_heads)

    def forward(self, visual: list[torch.Tensor], lang: torch.Tensor,
                lang_mask: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.b_attn(visual, lang, lang_mask)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)


class _Dense(nn.Module):
    def __init__(self, cin: int, cout: int, eps: float | None) -> None:
        super().__init__()
        self.dense = nn.Linear(cin, cout)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(cout, eps=eps)


class _Attention(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.self = _SelfAttention(dim)
        self.output = _Dense(dim, dim, eps)


class BertFusionLayer(nn.Module):
    """One BERT encoder layer over the fused language features (post-LN, GELU)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.heads = heads
        self.attention = _Attention(hidden, eps)
        self.intermediate = _Dense(hidden, intermediate, None)
        self.output = _Dense(intermediate, hidden, eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        sa = self.attention.self

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        scores = scores.clamp(-_CLAMP, _CLAMP)
        scores = scores + ((1.0 - mask.to(scores.dtype)) * torch.finfo(scores.dtype).min).view(b, 1, 1, n)
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        out = self.attention.output
        attn_out = out.LayerNorm(out.dense(ctx) + x)
        inter = F.gelu(self.intermediate.dense(attn_out))
        return self.output.LayerNorm(self.output.dense(inter) + attn_out)
