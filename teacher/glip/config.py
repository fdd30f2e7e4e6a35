"""GLIP architecture and inference settings, as one JSON-serialisable dataclass.

The presets mirror the official configs: `glip_Swin_T_O365_GoldG.yaml` (GLIP-T) and
`glip_Swin_L.yaml` (GLIP-L). Everything the module tree needs to reproduce the official
state-dict names and shapes lives here, plus the test-time pre- and post-processing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

BERT_BASE_UNCASED: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}


@dataclasses.dataclass
class GlipConfig:
    variant: str = "glip-t"
    # Swin backbone
    swin_embed_dim: int = 96
    swin_depths: tuple[int, ...] = (2, 2, 6, 2)
    swin_num_heads: tuple[int, ...] = (3, 6, 12, 24)
    swin_window_size: int = 7
    swin_mlp_ratio: float = 4.0
    # FPN / head
    fpn_channels: int = 256
    head_channels: int = 256
    num_fused_blocks: int = 6
    group_norm_groups: int = 16  # MODEL.GROUP_NORM.NUM_GROUPS in the GLIP configs
    num_classes: int = 80  # cls_logits outputs (unused for grounding, kept for strict loading)
    anchor_sizes: tuple[int, ...] = (64, 128, 256, 512, 1024)
    anchor_strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    # fusion (BiMultiHeadAttention)
    fusion_embed_dim: int = 2048
    fusion_num_heads: int = 8
    # language
    bert: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(BERT_BASE_UNCASED))
    max_query_len: int = 256
    # pre-processing (official test transform)
    min_size_test: int = 800
    max_size_test: int = 1333
    size_divisibility: int = 32
    pixel_mean: tuple[float, ...] = (103.53, 116.28, 123.675)
    pixel_std: tuple[float, ...] = (57.375, 57.12, 58.395)
    # post-processing (ATSS)
    pre_nms_thresh: float = 0.05
    pre_nms_top_n: int = 1000
    nms_thresh: float = 0.6
    detections_per_img: int = 100

    @property
    def lang_dim(self) -> int:
        return int(self.bert["hidden_size"])

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_type"] = "glip"
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GlipConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("swin_depths", "swin_num_heads", "anchor_sizes", "anchor_strides",
                    "pixel_mean", "pixel_std"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "GlipConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def glip_t_config() -> GlipConfig:
    """Official GLIP-T (Swin-T, 6 fused DyHead blocks)."""
    return GlipConfig(variant="glip-t")


def glip_l_config() -> GlipConfig:
    """Official GLIP-L (Swin-L with window 12, 8 fused DyHead blocks)."""
    return GlipConfig(
        variant="glip-l",
        swin_embed_dim=192,
        swin_depths=(2, 2, 18, 2),
        swin_num_heads=(6, 12, 24, 48),
        swin_window_size=12,
        num_fused_blocks=8,
    )


def config_for_variant(variant: str) -> GlipConfig:
    presets = {"glip-t": glip_t_config, "glip-l": glip_l_config}
    if variant not in presets:
        raise ValueError(f"unknown GLIP variant {variant!r}; expected one of {sorted(presets)}")
    return presets[variant]()


def golden_config(meta: dict[str, Any]) -> GlipConfig:
    """The scaled-down GLIP-T of `shared/data/glip_golden`, from its `golden_meta.json`."""
    over = meta["config_overrides"]
    bert = dict(BERT_BASE_UNCASED)
    bert.update(over["bert"])
    post = meta["postprocess"]
    return GlipConfig(
        variant="glip-golden",
        swin_embed_dim=over["SWINT.EMBED_DIM"],
        swin_depths=tuple(over["SWINT.DEPTHS"]),
        swin_num_heads=tuple(over["SWINT.NUM_HEADS"]),
        fpn_channels=over["BACKBONE.OUT_CHANNELS"],
        head_channels=over["DYHEAD.CHANNELS"],
        num_fused_blocks=over["DYHEAD.NUM_CONVS"],
        bert=bert,
        min_size_test=meta["resize"]["min_size_test"],
        max_size_test=meta["resize"]["max_size_test"],
        size_divisibility=meta["resize"]["size_divisibility"],
        pixel_mean=tuple(meta["pixel"]["mean"]),
        pixel_std=tuple(meta["pixel"]["std"]),
        pre_nms_thresh=post["pre_nms_thresh"],
        pre_nms_top_n=post["pre_nms_top_n"],
        nms_thresh=post["nms_thresh"],
        detections_per_img=post["detections_per_img"],
    )
