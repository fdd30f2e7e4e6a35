"""GLIP grounding semantics on token logits: pure torch, no model, no Ray.

- `positive_map`: which tokens each phrase covers, from the tokenizer's character offsets.
- `phrase_scores`: mean over a phrase's tokens of the token probabilities (GLIP's positive map).
- `select_detections`: best phrase per box, threshold, NMS per phrase, at most K boxes
  (`pack_best_phrases` on the device for a whole batch, then `select_from_best` per image on the host).
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
    pos = np.zeros((len(spans), num_tokens), dtype=np.float32)
    tokens = np.asarray(offsets[:num_tokens], dtype=np.int64).reshape(-1, 2)
    if len(spans) and len(tokens):
        ts, te = tokens[None, :, 0], tokens[None, :, 1]
        span = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        s, e = span[:, 0, None], span[:, 1, None]
        pos[:, : len(tokens)] = (te > ts) & (ts < e) & (te > s)
    return torch.from_numpy(pos)


def phrase_scores(token_logits: torch.Tensor, pos_map: torch.Tensor) -> torch.Tensor:
    """[..., queries, tokens] logits and [phrases, tokens] map -> [..., queries, phrases] scores.

    Score = mean over the phrase's tokens of sigmoid(logit). Masked tokens (logit -inf) have
    probability 0 and are outside every phrase anyway.
    """
    probs = token_logits.float().sigmoid()
    pos = pos_map.to(probs.device, probs.dtype)
    counts = pos.sum(-1).clamp(min=1.0).unsqueeze(-2)  # [..., 1, phrases]
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


NMS_BLOCK = 64  # boxes scanned per step of `greedy_nms`: one 64-bit suppression mask per box


def _pair_iou(b: np.ndarray, area: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """IoU of boxes `rows` against boxes `cols` (indices into xyxy `b`): [len(rows), len(cols)]."""
    w = np.minimum(b[rows, None, 2], b[None, cols, 2]) - np.maximum(b[rows, None, 0], b[None, cols, 0])
    h = np.minimum(b[rows, None, 3], b[None, cols, 3]) - np.maximum(b[rows, None, 1], b[None, cols, 1])
    inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    union = area[rows, None] + area[None, cols] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def greedy_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray | None, iou_threshold: float, max_keep: int | None = None
) -> np.ndarray:
    """Greedy NMS on the host: kept indices by descending score (ties by index), at most `max_keep`.

    Boxes of different `groups` (phrases) never suppress each other. The result is exactly the
    textbook greedy one, computed a block at a time because this runs under the GIL beside the
    GPU's kernel launches: the next 64 surviving boxes are scanned against each other as 64-bit
    masks, then the block's kept boxes suppress all later boxes in one vectorised step. That is
    a few numpy calls per 64 boxes instead of several per kept box.
    """
    n = len(scores)
    if n == 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order].astype(np.float64)
    g = groups[order] if groups is not None else np.zeros(n, dtype=np.int64)
    area = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    alive = np.ones(n, dtype=bool)
    limit = n if max_keep is None else max_keep
    keep: list[int] = []
    while len(keep) < limit:
        block = np.flatnonzero(alive)[:NMS_BLOCK]
        if block.size == 0:
            break
        alive[block] = False
        suppresses = (_pair_iou(b, area, block, block) > iou_threshold) & (g[block, None] == g[None, block])
        masks = np.packbits(suppresses, axis=1, bitorder="little")
        masks = np.pad(masks, ((0, 0), (0, 8 - masks.shape[1]))).view("<u8")[:, 0].tolist()
        dead = 0
        kept: list[int] = []
        for i in range(block.size):
            if not dead >> i & 1:
                kept.append(i)
                if len(keep) + len(kept) >= limit:
                    break
                dead |= masks[i]
        kept_boxes = block[kept]
        keep.extend(kept_boxes.tolist())
        rest = np.flatnonzero(alive)
        if rest.size and len(keep) < limit:
            hit = (_pair_iou(b, area, kept_boxes, rest) > iou_threshold) & (g[kept_boxes, None] == g[None, rest])
            alive[rest[hit.any(axis=0)]] = False
    return order[np.asarray(keep, dtype=np.int64)]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int | None = None) -> torch.Tensor:
    """Greedy NMS over torch tensors (any device); see `greedy_nms`."""
    kept = greedy_nms(boxes.detach().float().cpu().numpy(), scores.detach().float().cpu().numpy(), None, iou_threshold, max_keep)
    return torch.from_numpy(kept).to(boxes.device)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float, max_keep: int | None = None
) -> torch.Tensor:
    """NMS within each group (phrase): boxes of different groups never suppress each other."""
    kept = greedy_nms(
        boxes.detach().float().cpu().numpy(), scores.detach().float().cpu().numpy(),
        groups.detach().cpu().numpy(), iou_threshold, max_keep,
    )
    return torch.from_numpy(kept).to(boxes.device)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def pack_best_phrases(scores: torch.Tensor, boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Device side of the selection for a batch: each box's best phrase and score, packed for one
    transfer. [B, Q, P] scores and [B, Q, 4] boxes -> [B, Q, 6] (score, phrase, x0, y0, x1, y1)."""
    best, phrase = scores.max(dim=-1)
    return torch.cat([best[..., None].float(), phrase[..., None].float(), boxes_xyxy.float()], dim=-1)


def unpack_best_phrases(packed: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[B, Q, 6] packed selection (any device) -> (best, phrase, boxes) host arrays."""
    arr = packed.cpu().numpy()
    return arr[..., 0], arr[..., 1].astype(np.int64), arr[..., 2:6]


def select_from_best(best: np.ndarray, phrase: np.ndarray, boxes: np.ndarray, *, width: int, height: int,
                     box_threshold: float, nms_iou: float, max_boxes: int) -> list[tuple[int, float, float, float, float, float]]:
    """Host side for one image: threshold the best-phrase scores, clip boxes to the frame,
    NMS per phrase, keep the top `max_boxes`. Returns (phrase, x0, y0, x1, y1, score) tuples."""
    keep = best >= box_threshold
    if not keep.any():
        return []
    best, phrase, b = best[keep], phrase[keep], boxes[keep]
    x0 = np.clip(np.minimum(b[:, 0], b[:, 2]), 0, width)
    x1 = np.clip(np.maximum(b[:, 0], b[:, 2]), 0, width)
    y0 = np.clip(np.minimum(b[:, 1], b[:, 3]), 0, height)
    y1 = np.clip(np.maximum(b[:, 1], b[:, 3]), 0, height)
    clipped = np.stack([x0, y0, x1, y1], axis=-1)
    kept = greedy_nms(clipped, best, phrase, nms_iou, max_boxes)
    return [
        (int(phrase[i]), float(clipped[i, 0]), float(clipped[i, 1]), float(clipped[i, 2]), float(clipped[i, 3]),
         float(min(max(best[i], 0.0), 1.0)))
        for i in kept
    ]


def select_detections(scores: torch.Tensor, boxes_xyxy: torch.Tensor, *, width: int, height: int,
                      box_threshold: float, nms_iou: float, max_boxes: int) -> list[tuple[int, float, float, float, float, float]]:
    """One image: [queries, phrases] scores and [queries, 4] pixel boxes -> kept detections.

    Each box takes its highest-scoring phrase; it is kept when that score >= box_threshold.
    Boxes are clipped to the [0, width] x [0, height] frame, then NMS runs per phrase, then the
    top `max_boxes` by score remain.
    """
    if scores.numel() == 0 or scores.shape[-1] == 0:
        return []
    best, phrase, boxes = unpack_best_phrases(pack_best_phrases(scores[None], boxes_xyxy[None]))
    return select_from_best(best[0], phrase[0], boxes[0], width=width, height=height,
                            box_threshold=box_threshold, nms_iou=nms_iou, max_boxes=max_boxes)


def merge_detections(
    detections: list[tuple[int, float, float, float, float, float]], *, nms_iou: float, max_boxes: int
) -> list[tuple[int, float, float, float, float, float]]:
    """Merge detections of one image from several prompts (chunks): NMS per phrase, top K."""
    if not detections:
        return []
    arr = np.asarray(detections, dtype=np.float64)
    kept = greedy_nms(arr[:, 1:5], arr[:, 5], arr[:, 0].astype(np.int64), nms_iou, max_boxes)
    return [detections[i] for i in kept]
