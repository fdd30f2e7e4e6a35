"""Batched GLIP inference: normalised images + token ids -> ATSS detections per item."""

from __future__ import annotations

import contextlib

import torch

from teacher.glip.model import GlipModel
from teacher.glip.postprocess import Detections, atss_postprocess


@torch.no_grad()
def detect(model: GlipModel, images: torch.Tensor, image_sizes: list[tuple[int, int]],
           input_ids: torch.Tensor, attention_mask: torch.Tensor, positive_maps: list[torch.Tensor],
           nms_thresh: float | None = None, detections_per_img: int | None = None,
           autocast_dtype: torch.dtype | None = None, nms_mode: str = "cuda") -> list[Detections]:
    """One detection set per batch item; `image_sizes` are (h, w) before padding.

    Post-processing runs in float32 even when the network runs under autocast.
    """
    cfg = model.config
    dev = images.device
    ctx = (torch.autocast(device_type=dev.type, dtype=autocast_dtype)
           if autocast_dtype is not None else contextlib.nullcontext())
    with ctx:
        out = model(images, input_ids.to(dev), attention_mask.to(dev))
    results = []
    for b, size in enumerate(image_sizes):
        results.append(atss_postprocess(
            [r[b] for r in out["bbox_reg"]], [c[b] for c in out["centerness"]],
            [d[b] for d in out["dot_product_logits"]], out["anchors"],
            positive_maps[b], size, cfg.pre_nms_thresh, cfg.pre_nms_top_n,
            cfg.nms_thresh if nms_thresh is None else nms_thresh,
            cfg.detections_per_img if detections_per_img is None else detections_per_img,
            nms_mode=nms_mode))
    return results
