"""Grounding maths on hand-made logits where the right answer is known."""

import math

import numpy as np
import pytest
import torch

from teacher.grounding import (
    NMS_BLOCK,
    batched_nms,
    box_iou,
    greedy_nms,
    merge_detections,
    nms,
    phrase_scores,
    positive_map,
    select_detections,
)

BIG = 20.0  # sigmoid(20) ~ 1
LOW = -20.0


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_positive_map_multi_token_phrase_and_specials():
    # "[CLS] a red car [SEP]" with offsets; special tokens have empty offsets.
    offsets = [(0, 0), (0, 1), (2, 5), (6, 9), (0, 0)]
    pos = positive_map(offsets, [(0, 9), (2, 5)], num_tokens=6)
    assert pos.shape == (2, 6)
    assert pos[0].tolist() == [0, 1, 1, 1, 0, 0]
    assert pos[1].tolist() == [0, 0, 1, 0, 0, 0]


def test_positive_map_repeated_phrase_uses_its_own_span():
    caption = "a dog and a dog"
    offsets = [(0, 0), (0, 1), (2, 5), (6, 9), (10, 11), (12, 15), (0, 0)]
    first, second = (0, 5), (10, 15)
    assert caption[first[0]:first[1]] == caption[second[0]:second[1]]
    pos = positive_map(offsets, [first, second], 7)
    assert pos[0].nonzero().flatten().tolist() == [1, 2]
    assert pos[1].nonzero().flatten().tolist() == [4, 5]


def test_positive_map_unicode_before_span():
    import os
    import tempfile

    from transformers import BertTokenizerFast

    from teacher.grounding_dino.tiny import build_vocab

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "vocab.txt")
        open(path, "w").write("\n".join(build_vocab()))
        tok = BertTokenizerFast(vocab=path, do_lower_case=True)
        caption = "😀 Ünïcode café — a red car"
        start = caption.index("a red car")
        enc = tok(caption, return_offsets_mapping=True)
        pos = positive_map(enc["offset_mapping"], [(start, start + len("a red car"))], len(enc["input_ids"]))
        chosen = [enc["offset_mapping"][i] for i in pos[0].nonzero().flatten().tolist()]
        assert "".join(caption[s:e] for s, e in chosen) == "aredcar"


def test_phrase_score_is_mean_token_probability():
    pos = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    logits = torch.tensor([[logit(0.9), logit(0.5), logit(0.2)]])
    scores = phrase_scores(logits, pos)
    assert torch.allclose(scores, torch.tensor([[0.7, 0.2]]), atol=1e-6)


def test_masked_tokens_count_as_zero_probability():
    pos = torch.tensor([[1.0, 0.0]])
    logits = torch.tensor([[float("-inf"), float("-inf")]])
    assert phrase_scores(logits, pos).item() == 0.0


def test_box_takes_best_phrase_and_threshold_applies_to_that_score():
    scores = torch.tensor([[0.3, 0.6], [0.2, 0.25], [0.9, 0.1]])
    boxes = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=torch.float32)
    dets = select_detections(scores, boxes, width=100, height=100, box_threshold=0.5, nms_iou=0.5, max_boxes=10)
    # box 1's best phrase scores 0.25 < 0.5: dropped even though it has two phrases
    assert [(d[0], round(d[5], 3)) for d in dets] == [(0, 0.9), (1, 0.6)]


def test_nms_per_phrase_keeps_overlapping_boxes_of_different_phrases():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    groups = torch.tensor([0, 0, 1])
    kept = batched_nms(boxes, scores, groups, 0.5).tolist()
    assert kept == [0, 2]
    assert nms(boxes, scores, 0.5).tolist() == [0]


def test_boxes_are_clipped_to_frame_and_capped_at_max_boxes():
    scores = torch.full((5, 1), 0.8) - torch.arange(5).float()[:, None] * 0.01
    boxes = torch.tensor([[-5, -5, 20, 20], [30, 0, 60, 10], [70, 0, 90, 10], [0, 50, 10, 60], [0, 80, 130, 140]], dtype=torch.float32)
    dets = select_detections(scores, boxes, width=100, height=120, box_threshold=0.1, nms_iou=0.5, max_boxes=3)
    assert len(dets) == 3
    for _, x0, y0, x1, y1, s in dets:
        assert 0 <= x0 <= x1 <= 100 and 0 <= y0 <= y1 <= 120 and 0 <= s <= 1
    assert dets[0][1:5] == (0.0, 0.0, 20.0, 20.0)


def test_iou_and_empty_inputs():
    a = torch.tensor([[0, 0, 10, 10]], dtype=torch.float32)
    b = torch.tensor([[5, 0, 15, 10]], dtype=torch.float32)
    assert abs(box_iou(a, b).item() - 1 / 3) < 1e-6
    assert nms(torch.zeros((0, 4)), torch.zeros(0), 0.5).numel() == 0
    assert select_detections(torch.zeros((3, 0)), torch.zeros((3, 4)), width=1, height=1, box_threshold=0, nms_iou=0.5, max_boxes=1) == []


def test_merge_detections_from_chunks():
    dets = [(0, 0.0, 0.0, 10.0, 10.0, 0.9), (0, 1.0, 1.0, 10.0, 10.0, 0.95), (1, 0.0, 0.0, 10.0, 10.0, 0.5)]
    merged = merge_detections(dets, nms_iou=0.5, max_boxes=10)
    assert merged == [dets[1], dets[2]]


def textbook_nms(boxes, scores, groups, iou_threshold, max_keep):
    """Greedy NMS as defined: visit boxes by descending score (ties by index), keep one unless a
    kept box of its group overlaps it by more than the threshold."""
    def iou(i, j):
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = (map(float, boxes[i]), map(float, boxes[j]))
        inter = max(min(ax1, bx1) - max(ax0, bx0), 0.0) * max(min(ay1, by1) - max(ay0, by0), 0.0)
        union = max(ax1 - ax0, 0.0) * max(ay1 - ay0, 0.0) + max(bx1 - bx0, 0.0) * max(by1 - by0, 0.0) - inter
        return inter / union if union > 0 else 0.0

    keep = []
    for i in sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i)):
        if len(keep) == max_keep:
            break
        if not any(groups[j] == groups[i] and iou(j, i) > iou_threshold for j in keep):
            keep.append(i)
    return keep


def random_boxes(rng, n, clustered):
    if clustered:  # detector-like: many near-duplicates around a few objects
        centres = rng.uniform(0, 1000, (max(1, n // 20), 2))[rng.integers(0, max(1, n // 20), n)]
        c = centres + rng.normal(0, 8, (n, 2))
        half = rng.uniform(20, 60, (n, 2))
    else:
        c, half = rng.uniform(0, 1000, (n, 2)), rng.uniform(0, 150, (n, 2))
    boxes = np.concatenate([c - half, c + half], axis=1).astype(np.float32)
    boxes[rng.random(n) < 0.05] = boxes[0]  # exact duplicates
    thin = rng.random(n) < 0.05  # zero or negative width
    boxes[thin, 2] = boxes[thin, 0] - np.floor(rng.uniform(0, 3, int(thin.sum())))
    scores = np.round(rng.uniform(0.1, 0.9, n), 2).astype(np.float32)  # rounding makes ties
    return boxes, scores, rng.integers(0, int(rng.integers(1, 6)), n)


@pytest.mark.parametrize("clustered", [False, True])
def test_greedy_nms_matches_the_textbook_definition_across_blocks(clustered):
    rng = np.random.default_rng(7 + clustered)
    for n in (1, 2, NMS_BLOCK - 1, NMS_BLOCK, NMS_BLOCK + 1, 3 * NMS_BLOCK + 5, 300):
        boxes, scores, groups = random_boxes(rng, n, clustered)
        for iou_threshold in (0.0, 0.3, 0.5, 1.0):
            for max_keep in (1, 7, 100, None):
                want = textbook_nms(boxes, scores, groups, iou_threshold, max_keep)
                got = greedy_nms(boxes, scores, groups, iou_threshold, max_keep).tolist()
                assert got == want, (n, iou_threshold, max_keep)
