"""Pair-level filters keep the row, mark it `filtered` and say why."""

from __future__ import annotations

import math

from pipeline.stages.pair_filter import PairRules, apply_pair_rules


def _row(scores, clip=None, image=None, status="ok"):
    boxes = [{"phrase": 0, "x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0, "score": s} for s in scores]
    for box, c in zip(boxes, clip or []):
        box.update(clip_score=c, rescored=math.sqrt(box["score"] * c))
    return {"key": "k", "status": status, "error": None if status == "ok" else "x", "boxes": boxes,
            "image_text_score": image}


def test_min_box_score_marks_pairs_without_a_confident_box() -> None:
    rows = [_row([0.7, 0.2]), _row([0.6]), _row([]), _row([0.1], status="decode_error")]
    assert apply_pair_rules(rows, PairRules(min_box_score=0.65)) == 2
    assert [r["status"] for r in rows] == ["ok", "filtered", "filtered", "decode_error"]
    assert "best box scores 0.600, under --min-pair-score 0.65" in rows[1]["error"]
    assert rows[2]["error"].startswith("no box") and len(rows[1]["boxes"]) == 1  # the boxes stay


def test_min_pair_clip_is_yolo_worlds_image_filter() -> None:
    keep = _row([0.9, 0.8], clip=[0.4, 0.3], image=0.35)  # sqrt(0.35 * 0.35) = 0.35
    drop = _row([0.9], clip=[0.2], image=0.3)  # sqrt(0.3 * 0.2) = 0.245
    empty = _row([], image=0.9)
    assert apply_pair_rules([keep, drop, empty], PairRules(min_pair_clip=0.3)) == 2
    assert keep["status"] == "ok" and drop["status"] == empty["status"] == "filtered"
    assert "= 0.245, under --min-pair-clip 0.3" in drop["error"]
    assert apply_pair_rules([_row([0.01])], PairRules()) == 0
