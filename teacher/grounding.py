"""GLIP grounding semantics on token logits: pure torch, no model, no Ray.

- `positive_map`: which tokens each phrase covers, from the tokenizer's character offsets.
- `phrase_scores`: mean over a phrase's tokens of the token probabilities (GLIP's positive map).
- `select_detections`: best phrase per box, threshold, NMS per phrase, at most K boxes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def positive_map(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]], num_tokens: int
) -> torch.Tensor:
    """[num_phrases, num_tokens] float map; row p has 1 for every token overlapping span p.

    Special and padding tokens have empty offsets (start == end) and never belong to a phrase.
    A phrase whose span overlaps no token (for example text the tokenizer dropped) has an empty
    row and can never be chosen.
    """
    pos = torch.zeros((len(spans), num_tokens), dtype=torch.float32)
    for t, (ts, te) in enumerate(offsets[:num_tokens]):
        if te <= ts:
            continue
        for p, (s, e) in enumerate(spans):
            if ts < e and te > s:
                pos[p, t] = 1.0
    return pos


def phrase_scores(token_logits: torch.Tensor, pos_map: torch.Tensor) -> torch.Tensor:
    """[..., queries, tokens] logits and [phrases, tokens] map -> [..., queries, phrases] scores.

    Score = mean over the phrase's tokens of sigmoid(logit). Masked tokens (logit -inf) have
    probability 0 and are outside every phrase anyway.
    """
    probs = token_logits.float().sigmoid()
    pos = pos_map.to(probs.device, probs.dtype)
    counts = pos.sum(-1).clamp(min=1.0)
    return (probs @ pos.transpose(-1, -2)) / counts


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: [n, 4] x [m, 4] -> [n, m]."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int | None = None) -> torch.Tensor:
    """Greedy NMS; kept indices by descending score (ties by index), at most `max_keep`.

    The IoU matrix is computed on the boxes' device in one shot; the greedy pass runs on the
    host over a boolean matrix and stops as soon as `max_keep` boxes are kept.
    """
    if boxes.numel() == 0:
        return torch.zeros((0,), dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    overlaps = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()
    n = order.numel()
    limit = n if max_keep is None else max_keep
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        suppressed |= overlaps[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float, max_keep: int | None = None
) -> torch.Tensor:
    """NMS within each group (phrase): boxes of different groups never suppress each other."""
    if boxes.numel() == 0:
        return torch.zeros((0,), dtype=torch.long, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    shifted = boxes + (groups.to(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_keep)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def select_detections(
    scores: torch.Tensor,
    boxes_xyxy: torch.Tensor,
    *,
    width: int,
    height: int,
    box_threshold: float,
    nms_iou: float,
    max_boxes: int,
) -> list[tuple[int, float, float, float, float, float]]:
    """One image: [queries, phrases] scores and [queries, 4] pixel boxes -> kept detections.

    Each box takes its highest-scoring phrase; it is kept when that score >= box_threshold.
    Boxes are clipped to the [0, width] x [0, height] frame, then NMS runs per phrase, then the
    top `max_boxes` by score remain. Returns (phrase, x0, y0, x1, y1, score) tuples.
    """
    if scores.numel() == 0 or scores.shape[-1] == 0:
        return []
    best, phrase = scores.max(dim=-1)
    keep = best >= box_threshold
    if not bool(keep.any()):
        return []
    best, phrase, boxes = best[keep], phrase[keep], boxes_xyxy[keep].float()
    boxes = torch.stack(
        [
            boxes[:, 0].clamp(0, width),
            boxes[:, 1].clamp(0, height),
            boxes[:, 2].clamp(0, width),
            boxes[:, 3].clamp(0, height),
        ],
        dim=-1,
    )
    boxes = torch.stack(
        [torch.minimum(boxes[:, 0], boxes[:, 2]), torch.minimum(boxes[:, 1], boxes[:, 3]),
         torch.maximum(boxes[:, 0], boxes[:, 2]), torch.maximum(boxes[:, 1], boxes[:, 3])],
        dim=-1,
    )
    kept = batched_nms(boxes, best, phrase, nms_iou, max_boxes)
    best = best[kept].clamp(0.0, 1.0).cpu().tolist()
    phrase = phrase[kept].cpu().tolist()
    boxes = boxes[kept].cpu().tolist()
    return [(int(p), b[0], b[1], b[2], b[3], float(s)) for p, b, s in zip(phrase, boxes, best)]


def merge_detections(
    detections: list[tuple[int, float, float, float, float, float]], *, nms_iou: float, max_boxes: int
) -> list[tuple[int, float, float, float, float, float]]:
    """Merge detections of one image from several prompts (chunks): NMS per phrase, top K."""
    if not detections:
        return []
    t = torch.tensor([d[1:5] for d in detections], dtype=torch.float32)
    s = torch.tensor([d[5] for d in detections], dtype=torch.float32)
    g = torch.tensor([d[0] for d in detections], dtype=torch.long)
    kept = batched_nms(t, s, g, nms_iou, max_boxes).tolist()
    return [detections[i] for i in kept]
