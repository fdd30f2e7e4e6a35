"""The GLIP module tree: `backbone.{body,fpn}`, `language_backbone.body.model` (BertModel),
`rpn.{head,anchor_generator}`, so that `state_dict()` names equal the official checkpoint's."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertModel

from teacher.glip.config import GlipConfig
from teacher.glip.dyhead import VLDyHead
from teacher.glip.fpn import FPN
from teacher.glip.postprocess import cell_anchor, grid_anchors
from teacher.glip.swin import SwinTransformer


class _Backbone(nn.Module):
    def __init__(self, cfg: GlipConfig) -> None:
        super().__init__()
        self.body = SwinTransformer(cfg.swin_embed_dim, cfg.swin_depths, cfg.swin_num_heads,
                                    cfg.swin_window_size, cfg.swin_mlp_ratio)
        self.fpn = FPN(self.body.num_features, cfg.fpn_channels)


class _LanguageBody(nn.Module):
    def __init__(self, cfg: GlipConfig) -> None:
        super().__init__()
        bert_cfg = BertConfig(**cfg.bert)
        bert_cfg._attn_implementation = "sdpa"
        self.model = BertModel(bert_cfg, add_pooling_layer=False)


class _LanguageBackbone(nn.Module):
    def __init__(self, cfg: GlipConfig) -> None:
        super().__init__()
        self.body = _LanguageBody(cfg)


class AnchorGenerator(nn.Module):
    def __init__(self, cfg: GlipConfig) -> None:
        super().__init__()
        self.strides = list(cfg.anchor_strides)
        self.cell_anchors = nn.Module()
        for i, (size, stride) in enumerate(zip(cfg.anchor_sizes, cfg.anchor_strides)):
            self.cell_anchors.register_buffer(str(i), cell_anchor(size, stride))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [grid_anchors(getattr(self.cell_anchors, str(i)), stride, f.shape[-2], f.shape[-1])
                for i, (f, stride) in enumerate(zip(feats, self.strides))]


class _RPN(nn.Module):
    def __init__(self, cfg: GlipConfig) -> None:
        super().__init__()
        self.head = VLDyHead(cfg)
        self.anchor_generator = AnchorGenerator(cfg)


class GlipModel(nn.Module):
    def __init__(self, cfg: GlipConfig) -> None:
        super().__init__()
        self.config = cfg
        self.backbone = _Backbone(cfg)
        self.language_backbone = _LanguageBackbone(cfg)
        self.rpn = _RPN(cfg)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """BERT's last layer, as the official `language_dict_features`."""
        out = self.language_backbone.body.model(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state
        embedded = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
        aggregate = embedded.sum(1) / attention_mask.sum(-1, keepdim=True).to(hidden.dtype)
        return {"hidden": hidden, "embedded": embedded, "masks": attention_mask, "aggregate": aggregate}

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                with_intermediates: bool = False) -> dict[str, object]:
        """`images`: normalised, padded BGR batch; text: padded token ids and mask."""
        stages = self.backbone.body(images)
        fpn = self.backbone.fpn(stages)
        lang = self.encode_text(input_ids, attention_mask)
        head = self.rpn.head(fpn, lang["hidden"], attention_mask, with_intermediates=with_intermediates)
        out: dict[str, object] = dict(head)
        out["anchors"] = self.rpn.anchor_generator(fpn)
        if with_intermediates:
            out["backbone"] = stages
            out["fpn"] = fpn
            out["language"] = lang
        return out
