"""Label quality against gold: the pure core of `glip-evaluate` (no I/O, no Ray).

Three questions, three sections of `evaluate`'s result:
- How good is the teacher by the published protocol? Phrase-grounding recall@k as MDETR's
  FlickrEvaluator computes it (GLIP reports the same code): per gold phrase, a hit at k when one
  of its top-k predicted boxes has IoU >= `iou` with a gold box of the phrase (ANY-BOX), or with
  the enclosing box of its gold boxes (MERGED-BOXES); IoU is MDETR's, `(x2 - x1) * (y2 - y1)`
  areas with no +1.
- Where are the misses? Our pipeline grounds its own noun phrases, not the gold ones, so a gold
  phrase's predictions are those of the extracted phrase overlapping it most; a gold phrase no
  extracted phrase overlaps is the parser's miss, one whose best box misses is the teacher's.
- Which score threshold should training use? A precision / recall / volume curve over thresholds,
  and score calibration bins, computed on the boxes that can be judged.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.tools.evaluate.gold import GoldPhrase, GoldSample

TOP_K = (1, 5, 10)
THRESHOLDS = tuple(round(i / 100, 2) for i in range(101))
RELIABILITY_BINS = 10


@dataclass(frozen=True)
class _PhraseOutcome:
    """One gold phrase against the row: which extracted phrase it aligned to (None: none
    overlaps it) and the 1-based rank of the first predicted box that hits, per protocol."""

    gold: GoldPhrase
    extracted: int | None
    first_hit: int | None  # ANY-BOX
    first_hit_merged: int | None  # MERGED-BOXES


def match_rows(gold: list[GoldSample], rows: list[dict]) -> list[tuple[GoldSample, dict]]:
    """Each gold sample with its output row: by key, else by exact caption and (width, height).

    The fallback finds outputs labelled from someone else's shard, whose keys are not the gold
    file's (the Flickr30k shard names its samples 000000000, ...). Each row serves at most one gold
    sample, so two gold captions that happen to be equal cannot both claim one row; a repeated
    key resolves to its first row. Gold samples with no row are left out.
    """
    by_key: dict[str, dict] = {}
    for row in rows:
        by_key.setdefault(row["key"], row)
    used: set[int] = set()
    pairs: dict[int, tuple[GoldSample, dict]] = {}
    for index, sample in enumerate(gold):
        row = by_key.get(sample.key)
        if row is not None and id(row) not in used:
            used.add(id(row))
            pairs[index] = (sample, row)
    by_content: dict[tuple[str, Any, Any], list[dict]] = defaultdict(list)
    for row in rows:
        if id(row) not in used:
            by_content[(row["caption"], row.get("width"), row.get("height"))].append(row)
    for index, sample in enumerate(gold):
        candidates = by_content.get((sample.caption, sample.width, sample.height))
        if index not in pairs and candidates:
            pairs[index] = (sample, candidates.pop(0))
    return [pairs[index] for index in sorted(pairs)]


def box_iou(boxes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """IoU matrix [len(boxes), len(targets)] of xyxy boxes, as MDETR's evaluator computes it:
    continuous areas `(x2 - x1) * (y2 - y1)`; a zero union (degenerate boxes) gives 0."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    target_area = (targets[:, 2] - targets[:, 0]) * (targets[:, 3] - targets[:, 1])
    top_left = np.maximum(boxes[:, None, :2], targets[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], targets[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area[:, None] + target_area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _predictions(gold: GoldSample, row: dict) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Extracted phrase index -> (scores, xyxy boxes in the gold frame), by descending score.

    A row not "ok" has no predictions. Boxes are rescaled from the row's width x height to the
    gold's, since a row matched by key may come from an image img2dataset resized."""
    if row.get("status") != "ok":
        return {}
    scale = np.ones(4)
    if row.get("width") and row.get("height"):
        sx, sy = gold.width / row["width"], gold.height / row["height"]
        scale = np.array([sx, sy, sx, sy])
    grouped: dict[int, list[tuple[float, list[float]]]] = defaultdict(list)
    for box in row.get("boxes") or []:
        grouped[int(box["phrase"])].append((float(box["score"]), [box["x0"], box["y0"], box["x1"], box["y1"]]))
    predictions = {}
    for phrase, items in grouped.items():
        items.sort(key=lambda item: -item[0])  # stable: equal scores keep the row's order
        scores = np.array([score for score, _ in items])
        predictions[phrase] = (scores, np.array([xyxy for _, xyxy in items], dtype=float) * scale)
    return predictions


def _align(phrase: GoldPhrase, extracted: list[dict]) -> int | None:
    """The extracted phrase whose span overlaps the gold span most (ties: the earlier one in the
    row's list, which is caption order); None when none overlaps by a character."""
    best, best_overlap = None, 0
    for index, candidate in enumerate(extracted):
        overlap = min(phrase.end, int(candidate["end"])) - max(phrase.start, int(candidate["start"]))
        if overlap > best_overlap:
            best, best_overlap = index, overlap
    return best


def _first_hit(boxes: np.ndarray, targets: np.ndarray, iou: float) -> int | None:
    """1-based rank of the first box (in score order) with IoU >= iou against any target."""
    if len(boxes) == 0:
        return None
    hits = np.flatnonzero(box_iou(boxes, targets).max(axis=1) >= iou)
    return int(hits[0]) + 1 if len(hits) else None


def _merged(boxes: np.ndarray) -> np.ndarray:
    """The smallest box enclosing all of `boxes` (MDETR's `_merge_boxes`), as a 1-row array."""
    return np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)])[None, :]


def _outcomes(gold: GoldSample, row: dict, predictions: dict, iou: float) -> list[_PhraseOutcome]:
    outcomes = []
    for phrase in gold.phrases:
        extracted = _align(phrase, list(row.get("phrases") or []))
        boxes = predictions.get(extracted, (None, np.zeros((0, 4))))[1]
        targets = np.array(phrase.boxes, dtype=float)
        outcomes.append(_PhraseOutcome(phrase, extracted, _first_hit(boxes, targets, iou),
                                       _first_hit(boxes, _merged(targets), iou)))
    return outcomes


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _recalls(first_hits: list[int | None]) -> dict[str, float | None]:
    """recall@k for TOP_K and the upper bound (a hit at any rank), from each phrase's first hit."""
    result = {f"recall_at_{k}": _share(sum(1 for r in first_hits if r is not None and r <= k), len(first_hits))
              for k in TOP_K}
    result["upper_bound"] = _share(sum(1 for r in first_hits if r is not None), len(first_hits))
    return result


def _per_type(outcomes: list[_PhraseOutcome]) -> dict[str, dict[str, Any]]:
    """ANY-BOX recalls per phrase type. A Flickr30k phrase of several types ("vehicles/scene")
    counts in each, as MDETR's RecallTracker does; phrases without a type (ODVG) in none."""
    by_type: dict[str, list[int | None]] = defaultdict(list)
    for outcome in outcomes:
        for phrase_type in (outcome.gold.type or "").split("/"):
            if phrase_type:
                by_type[phrase_type].append(outcome.first_hit)
    return {t: {**_recalls(hits), "count": len(hits)} for t, hits in sorted(by_type.items())}


def _error_split(outcomes: list[_PhraseOutcome]) -> dict[str, Any]:
    """Parser miss (no extracted phrase overlaps), teacher miss (one does, but its best box
    misses or it has none), grounded (its best box hits): counts and shares, summing to 1."""
    counts = {"parser_miss": 0, "teacher_miss": 0, "grounded": 0}
    for outcome in outcomes:
        if outcome.extracted is None:
            counts["parser_miss"] += 1
        else:
            counts["grounded" if outcome.first_hit == 1 else "teacher_miss"] += 1
    result: dict[str, Any] = {name: _share(count, len(outcomes)) for name, count in counts.items()}
    result.update({f"{name}_count": count for name, count in counts.items()})
    return result


def _greedy_matches(boxes: np.ndarray, targets: np.ndarray, iou: float) -> np.ndarray:
    """Per box (in descending score order), whether it matches a gold box, COCO-style: each box
    takes the unmatched gold box of highest IoU >= iou; a box on an already matched gold box is
    a false positive. Greedy in score order, so the matches of the boxes above any threshold are
    the first ones of this list: one pass serves every threshold."""
    matched = np.zeros(len(boxes), dtype=bool)
    if len(boxes) == 0 or len(targets) == 0:
        return matched
    ious = box_iou(boxes, targets)
    taken = np.zeros(len(targets), dtype=bool)
    for index in range(len(boxes)):
        candidates = np.where(taken | (ious[index] < iou), -1.0, ious[index])
        best = int(np.argmax(candidates))
        if candidates[best] >= 0:
            taken[best] = matched[index] = True
    return matched


def _judged_boxes(outcomes: list[_PhraseOutcome], predictions: dict,
                  iou: float) -> tuple[list[tuple[float, bool]], int]:
    """(score, matched) of the boxes whose phrase aligns to a gold phrase, and how many boxes
    could not be judged. An extracted phrase several gold phrases align to is judged against all
    their gold boxes together."""
    targets: dict[int, list] = defaultdict(list)
    for outcome in outcomes:
        if outcome.extracted is not None:
            targets[outcome.extracted].extend(outcome.gold.boxes)
    judged, unjudged = [], 0
    for phrase, (scores, boxes) in predictions.items():
        if phrase not in targets:
            unjudged += len(scores)
            continue
        matched = _greedy_matches(boxes, np.array(targets[phrase], dtype=float), iou)
        judged.extend(zip(scores.tolist(), matched.tolist()))
    return judged, unjudged


def _threshold_curve(judged: list[tuple[float, bool]], stored_scores: list[float], samples: int,
                     gold_boxes: int) -> list[dict[str, Any]]:
    """Precision, recall and boxes per sample at each of THRESHOLDS. A box passes at `score >=
    threshold` on its stored value, the comparison `pipeline.training.targets.filter_boxes`
    makes, so the curve predicts what a --min-score filter keeps."""
    scores = np.array([score for score, _ in judged])
    matched = np.array([hit for _, hit in judged], dtype=bool)
    stored = np.array(stored_scores)
    curve = []
    for threshold in THRESHOLDS:
        kept = scores >= threshold
        hits = int((kept & matched).sum())
        curve.append({
            "threshold": threshold,
            "precision": _share(hits, int(kept.sum())),
            "recall": _share(hits, gold_boxes),
            "boxes_per_sample": float((stored >= threshold).sum()) / samples,
        })
    return curve


def _at_target(curve: list[dict[str, Any]], target_precision: float | None) -> dict[str, Any]:
    """The lowest threshold reaching the target precision (the most labels at that quality)."""
    point = None
    if target_precision is not None:
        point = next((p for p in curve if p["precision"] is not None and p["precision"] >= target_precision), None)
    return {
        "target_precision": target_precision,
        "threshold_for_target_precision": None if point is None else point["threshold"],
        "boxes_per_sample_at_target": None if point is None else point["boxes_per_sample"],
        "recall_at_target": None if point is None else point["recall"],
    }


def _reliability(judged: list[tuple[float, bool]]) -> list[dict[str, Any]]:
    """Judged boxes in score bins [0, 0.1), ..., [0.9, 1.0]: is a score of 0.8 right 80% of the time?"""
    scores = np.array([score for score, _ in judged])
    matched = np.array([hit for _, hit in judged], dtype=bool)
    bins = []
    for index in range(RELIABILITY_BINS):
        lo, hi = index / RELIABILITY_BINS, (index + 1) / RELIABILITY_BINS
        inside = (scores >= lo) & ((scores < hi) if index < RELIABILITY_BINS - 1 else (scores <= hi))
        count = int(inside.sum())
        bins.append({
            "lo": lo,
            "hi": hi,
            "boxes": count,
            "precision": _share(int(matched[inside].sum()), count),
            "mean_score": float(scores[inside].mean()) if count else None,
        })
    return bins


def evaluate(pairs: list[tuple[GoldSample, dict]], *, iou: float = 0.5,
             target_precision: float | None = None) -> dict:
    """The label-quality report of matched (gold, row) pairs, as a JSON-serialisable dict
    (module docstring: recall by the published protocol, error split, threshold choice).

    Rates are None where their denominator is zero (no gold phrase, no judged box). Alignment is
    by character span, which assumes the row's caption is the gold caption: `caption_mismatches`
    counts the pairs (matched by key) where it is not, for the report to warn about."""
    if not pairs:
        raise ValueError("no gold sample matches a row of the output: check that the gold file describes the "
                         "labelled images (rows match by key, else by exact caption and image size)")
    outcomes: list[_PhraseOutcome] = []
    judged: list[tuple[float, bool]] = []
    stored_scores: list[float] = []
    unjudged = caption_mismatches = 0
    for gold, row in pairs:
        caption_mismatches += row.get("caption") != gold.caption
        predictions = _predictions(gold, row)
        sample_outcomes = _outcomes(gold, row, predictions, iou)
        sample_judged, sample_unjudged = _judged_boxes(sample_outcomes, predictions, iou)
        outcomes += sample_outcomes
        judged += sample_judged
        unjudged += sample_unjudged
        stored_scores += [s for scores, _ in predictions.values() for s in scores.tolist()]
    gold_boxes = sum(len(o.gold.boxes) for o in outcomes)
    curve = _threshold_curve(judged, stored_scores, len(pairs), gold_boxes)
    merged = _recalls([o.first_hit_merged for o in outcomes])
    return {
        "samples": len(pairs),
        "gold_phrases": len(outcomes),
        "gold_boxes": gold_boxes,
        "iou": iou,
        "caption_mismatches": caption_mismatches,
        **_recalls([o.first_hit for o in outcomes]),
        **{f"merged_{name}": value for name, value in merged.items()},
        "per_type": _per_type(outcomes),
        **_error_split(outcomes),
        "judged_boxes": len(judged),
        "unjudged_boxes": unjudged,
        "threshold_curve": curve,
        **_at_target(curve, target_precision),
        "reliability": _reliability(judged),
    }


def coco_ap(gold_json: dict, rows: list[dict]) -> dict:
    """{"AP", "AP50", "detections"} of the rows' boxes as COCO detections, by pycocotools' COCOeval.

    A row is the image whose id, as a string, is its key; a box is a detection of the category
    whose name equals its phrase's text (case-insensitive, stripped), rescaled into the image's
    gold frame; boxes naming no category and rows not "ok" are left out. With no detection at
    all AP is 0 (pycocotools cannot load an empty result list)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    category_ids = {str(c["name"]).strip().lower(): c["id"] for c in gold_json["categories"]}
    images = {str(image["id"]): image for image in gold_json["images"]}
    detections = []
    for row in rows:
        image = images.get(row["key"])
        if image is None or row.get("status") != "ok":
            continue
        sx, sy = image["width"] / row["width"], image["height"] / row["height"]
        for box in row.get("boxes") or []:
            category = category_ids.get(str(row["phrases"][box["phrase"]]["text"]).strip().lower())
            if category is not None:
                x0, y0, x1, y1 = box["x0"] * sx, box["y0"] * sy, box["x1"] * sx, box["y1"] * sy
                detections.append({"image_id": image["id"], "category_id": category,
                                   "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(box["score"])})
    if not detections:
        return {"AP": 0.0, "AP50": 0.0, "detections": 0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        truth = COCO()
        truth.dataset = copy.deepcopy(gold_json)  # COCOeval writes "ignore" into the annotations
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1]), "detections": len(detections)}
