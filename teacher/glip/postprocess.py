"""Anchors, box decoding and the official ATSS grounding post-processing.

Conventions kept from maskrcnn_benchmark because the numbers depend on them: the "+1"
box widths, dw/dh clamped at log(1000/16), clipping to (w-1, h-1), per-label NMS as the
official GPU kernel does it ("+1" areas, suppress when IoU > threshold), and the top-K cut
by k-th value (ties may keep more).
"""

from __future__ import annotations

import dataclasses
import math

import torch

_BBOX_CLIP = math.log(1000.0 / 16)


def cell_anchor(size: int, stride: int) -> torch.Tensor:
    """The single square anchor (aspect 1, one scale per octave) of a level, as [1, 4]."""
    ctr = 0.5 * (stride - 1)
    half = 0.5 * (size - 1)
    return torch.tensor([[ctr - half, ctr - half, ctr + half, ctr + half]], dtype=torch.float32)


def grid_anchors(cell: torch.Tensor, stride: int, h: int, w: int) -> torch.Tensor:
    dev = cell.device
    sy, sx = torch.meshgrid(torch.arange(0, h * stride, stride, device=dev, dtype=torch.float32),
                            torch.arange(0, w * stride, stride, device=dev, dtype=torch.float32),
                            indexing="ij")
    shifts = torch.stack([sx.reshape(-1), sy.reshape(-1), sx.reshape(-1), sy.reshape(-1)], dim=1)
    return (shifts[:, None, :] + cell[None].float()).reshape(-1, 4)


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    widths = anchors[:, 2] - anchors[:, 0] + 1
    heights = anchors[:, 3] - anchors[:, 1] + 1
    ctr_x = (anchors[:, 2] + anchors[:, 0]) / 2
    ctr_y = (anchors[:, 3] + anchors[:, 1]) / 2
    dx, dy = deltas[:, 0] / 10.0, deltas[:, 1] / 10.0
    dw = (deltas[:, 2] / 5.0).clamp(max=_BBOX_CLIP)
    dh = (deltas[:, 3] / 5.0).clamp(max=_BBOX_CLIP)
    cx = dx * widths + ctr_x
    cy = dy * heights + ctr_y
    pw = torch.exp(dw) * widths
    ph = torch.exp(dh) * heights
    return torch.stack([cx - 0.5 * (pw - 1), cy - 0.5 * (ph - 1),
                        cx + 0.5 * (pw - 1), cy + 0.5 * (ph - 1)], dim=1)


def nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float, plus_one: bool = True) -> torch.Tensor:
    """Greedy NMS (IoU > thresh suppresses); returns kept indices by decreasing score.

    `plus_one` gives the official CUDA kernel's "+1" widths; without it this is
    torchvision's `nms`, which the official code uses on the CPU.
    """
    one = 1.0 if plus_one else 0.0
    order = torch.argsort(scores, descending=True)
    x0, y0, x1, y1 = boxes.unbind(1)
    areas = (x1 - x0 + one) * (y1 - y0 + one)
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = (torch.minimum(x1[i], x1[rest]) - torch.maximum(x0[i], x0[rest]) + one).clamp(min=0)
        ih = (torch.minimum(y1[i], y1[rest]) - torch.maximum(y0[i], y0[rest]) + one).clamp(min=0)
        inter = iw * ih
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= thresh]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.long, device=boxes.device)


def _per_label_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                   thresh: float) -> torch.Tensor:
    keep = []
    for lab in labels.unique():
        ids = (labels == lab).nonzero().view(-1)
        keep.append(ids[nms(boxes[ids], scores[ids], thresh)])
    keep_t = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long, device=boxes.device)
    return keep_t[torch.argsort(scores[keep_t], descending=True)]


def _cpu_path_ml_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                     thresh: float) -> torch.Tensor:
    """GLIP's `boxlist_ml_nms` on the CPU, quirks included: per label it runs torchvision's
    NMS (no "+1") and then indexes the *whole* candidate list with those per-label indices
    without mapping them back, so boxes of other labels and duplicates come out. Only for
    reproducing CPU-made reference numbers (the golden data); real inference uses "cuda"."""
    keep = []
    for lab in labels.unique():
        ids = (labels == lab).nonzero().view(-1)
        keep.append(nms(boxes[ids], scores[ids], thresh, plus_one=False))
    return torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long, device=boxes.device)


@dataclasses.dataclass
class Detections:
    boxes: torch.Tensor  # [n, 4] xyxy in the resized image's frame (on the CPU)
    scores: torch.Tensor  # [n] sqrt(phrase score x centerness)
    labels: torch.Tensor  # [n] 1-based phrase ids


def phrase_scores(token_logits: torch.Tensor, positive_map: torch.Tensor) -> torch.Tensor:
    """Mean token probability per phrase: [L, T] logits x [P, T] 0/1 map -> [L, P].

    Gather-then-mean, in float32, as the official `convert_grounding_to_od_logits`.
    """
    probs = token_logits.float().sigmoid()
    cols = []
    for row in positive_map:
        tokens = row.nonzero().view(-1).to(probs.device)
        cols.append(probs[:, tokens].mean(-1) if tokens.numel() else probs.new_zeros(probs.shape[0]))
    return torch.stack(cols, dim=1)


def atss_postprocess(bbox_reg: list[torch.Tensor], centerness: list[torch.Tensor],
                     dot_logits: list[torch.Tensor], anchors: list[torch.Tensor],
                     positive_map: torch.Tensor, image_size: tuple[int, int],
                     pre_nms_thresh: float, pre_nms_top_n: int, nms_thresh: float,
                     detections_per_img: int, nms_mode: str = "cuda") -> Detections:
    """One image: per-level tensors without the batch dim (reg [4,H,W], ctr [1,H,W], logits [HW,T]).

    `image_size` is (height, width) of the resized image before padding. `nms_mode`
    "cuda" is the official GPU path (per-label NMS, IoU > thresh suppresses); "cpu-compat"
    reproduces the official CPU path (see `_cpu_path_ml_nms`), which the golden numbers used.
    """
    h_img, w_img = image_size
    all_boxes, all_scores, all_labels = [], [], []
    for reg, ctr, logits, anc in zip(bbox_reg, centerness, dot_logits, anchors):
        scores = phrase_scores(logits, positive_map)  # L, P
        reg = reg.float().permute(1, 2, 0).reshape(-1, 4)
        ctr = ctr.float().permute(1, 2, 0).reshape(-1).sigmoid()
        candidates = scores > pre_nms_thresh
        n = int(candidates.sum().clamp(max=pre_nms_top_n))
        combined = (scores * ctr[:, None])[candidates]
        top, idx = combined.topk(n, sorted=False)
        nz = candidates.nonzero()[idx]
        loc, label = nz[:, 0], nz[:, 1] + 1
        boxes = decode_boxes(reg[loc], anc[loc])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w_img - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h_img - 1)
        all_boxes.append(boxes)
        all_scores.append(torch.sqrt(top))
        all_labels.append(label)
    # at most pre_nms_top_n per level are left: NMS's sequential loop is quicker on the CPU
    boxes, scores, labels = (torch.cat(t).cpu() for t in (all_boxes, all_scores, all_labels))
    if nms_mode == "cuda":
        keep_t = _per_label_nms(boxes, scores, labels, nms_thresh)
    elif nms_mode == "cpu-compat":
        keep_t = _cpu_path_ml_nms(boxes, scores, labels, nms_thresh)
    else:
        raise ValueError(f"unknown nms_mode {nms_mode!r}")
    boxes, scores, labels = boxes[keep_t], scores[keep_t], labels[keep_t]
    n = scores.numel()
    if n > detections_per_img > 0:
        kth = torch.kthvalue(scores.float(), n - detections_per_img + 1).values.item()
        sel = scores >= kth
        boxes, scores, labels = boxes[sel], scores[sel], labels[sel]
    return Detections(boxes, scores, labels)
