"""Label-quality metrics on hand-made cases whose answers are worked out here by hand."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipeline.tools.evaluate.gold import GoldPhrase, GoldSample, read_gold
from pipeline.tools.evaluate.metrics import coco_ap, evaluate, match_rows
from tests.project import SHARED

FLICKR_19 = SHARED / "flickr30k_19img" / "captions_gold_phrases.jsonl"
CAPTION = "a man throws a red ball to a dog"  # "a man" [0,5), "a red ball" [13,23), "a dog" [27,32)


def gold(*phrases: GoldPhrase, key: str = "img_0", caption: str = CAPTION, size: tuple[int, int] = (100, 100)
         ) -> GoldSample:
    return GoldSample(key, key.split("_")[0], caption, size[0], size[1], phrases, None)


def phrase(start: int, end: int, *boxes: tuple, kind: str | None = "other", caption: str = CAPTION) -> GoldPhrase:
    return GoldPhrase(start, end, caption[start:end], kind, tuple(tuple(float(v) for v in b) for b in boxes))


def row(spans: list[tuple[int, int]], boxes: list[tuple], *, key: str = "img_0", caption: str = CAPTION,
        size: tuple[int, int] = (100, 100), status: str = "ok") -> dict:
    """An output row; each box is (phrase index, x0, y0, x1, y1, score)."""
    return {
        "key": key, "shard": "00000", "caption": caption, "width": size[0], "height": size[1], "status": status,
        "phrases": [{"text": caption[s:e], "start": s, "end": e} for s, e in spans],
        "boxes": [dict(zip(("phrase", "x0", "y0", "x1", "y1", "score"), b)) for b in boxes],
    }


RECALL_KEYS = ("recall_at_1", "recall_at_5", "recall_at_10", "upper_bound")


def recalls(result: dict, prefix: str = "") -> tuple:
    return tuple(result[prefix + k] for k in RECALL_KEYS)


def test_predictions_equal_to_gold_recall_everything() -> None:
    man, ball = (10, 10, 40, 90), (50, 60, 60, 70)
    sample = gold(phrase(0, 5, man, kind="people"), phrase(13, 23, ball))
    result = evaluate([(sample, row([(0, 5), (13, 23)], [(0, *man, 0.9), (1, *ball, 0.8)]))])
    assert recalls(result) == recalls(result, "merged_") == (1.0, 1.0, 1.0, 1.0)
    assert (result["samples"], result["gold_phrases"], result["grounded"]) == (1, 2, 1.0)
    assert result["per_type"] == {
        "other": {"recall_at_1": 1.0, "recall_at_5": 1.0, "recall_at_10": 1.0, "upper_bound": 1.0, "count": 1},
        "people": {"recall_at_1": 1.0, "recall_at_5": 1.0, "recall_at_10": 1.0, "upper_bound": 1.0, "count": 1},
    }
    json.dumps(result)


@pytest.mark.parametrize("shift, hit", [(33.0, True), (34.0, False)])
def test_iou_just_over_and_just_under_one_half(shift: float, hit: bool) -> None:
    # Gold (0,0,100,100); prediction shifted right by `shift`: intersection (100-shift)*100,
    # union 2*10000 - intersection, so IoU = (100-shift)/(100+shift): 67/133 = 0.5038, 66/134 = 0.4925.
    iou = (100 - shift) * 100 / (2 * 100 * 100 - (100 - shift) * 100)
    assert (iou >= 0.5) == hit and abs(iou - 0.5) < 0.01
    result = evaluate([(gold(phrase(27, 32, (0, 0, 100, 100)), size=(300, 100)),
                        row([(27, 32)], [(0, shift, 0, 100 + shift, 100, 0.9)], size=(300, 100)))])
    assert result["recall_at_1"] == (1.0 if hit else 0.0)


def test_iou_of_exactly_one_half_is_a_hit() -> None:
    result = evaluate([(gold(phrase(27, 32, (0, 0, 100, 100))), row([(27, 32)], [(0, 0, 0, 100, 50, 0.9)]))])
    assert result["recall_at_1"] == 1.0  # 5000 / 10000: MDETR counts IoU >= threshold
    assert evaluate([(gold(phrase(27, 32, (0, 0, 100, 100))), row([(27, 32)], [(0, 0, 0, 100, 50, 0.9)]))],
                    iou=0.51)["recall_at_1"] == 0.0


def test_any_box_hit_merged_miss_and_the_reverse() -> None:
    # Two gold boxes of one entity; their enclosing box is (0,0,100,100).
    dogs = phrase(27, 32, (0, 0, 10, 10), (90, 90, 100, 100))
    one_dog = evaluate([(gold(dogs), row([(27, 32)], [(0, 0, 0, 10, 10, 0.9)]))])
    assert recalls(one_dog) == (1.0, 1.0, 1.0, 1.0)
    assert recalls(one_dog, "merged_") == (0.0, 0.0, 0.0, 0.0)  # IoU with the merged box: 100 / 10000
    enclosing = evaluate([(gold(dogs), row([(27, 32)], [(0, 0, 0, 100, 100, 0.9)]))])
    assert recalls(enclosing) == (0.0, 0.0, 0.0, 0.0)  # 100 / 10000 with either gold box
    assert recalls(enclosing, "merged_") == (1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("rank, expected", [(3, (0.0, 1.0, 1.0, 1.0)), (7, (0.0, 0.0, 1.0, 1.0)),
                                            (12, (0.0, 0.0, 0.0, 1.0))])
def test_recall_at_k_counts_the_rank_of_the_first_hit(rank: int, expected: tuple) -> None:
    target = (20, 20, 60, 60)
    misses = [(0, 70, 70, 80, 80, 0.9 - i * 0.01) for i in range(rank - 1)]
    hit = (0, *target, 0.9 - rank * 0.01)  # scored below every miss, stored first: order comes from the scores
    result = evaluate([(gold(phrase(27, 32, target)), row([(27, 32)], [hit, *misses]))])
    assert recalls(result) == expected


def test_phrases_without_predictions_are_misses() -> None:
    man, ball, dog = (10, 10, 40, 90), (50, 60, 60, 70), (60, 60, 90, 90)
    sample = gold(phrase(0, 5, man), phrase(13, 23, ball), phrase(27, 32, dog))
    # "a man" grounded; "a red ball" extracted but given no box; "a dog" not extracted.
    result = evaluate([(sample, row([(0, 5), (13, 23)], [(0, *man, 0.9)]))])
    assert recalls(result) == (1 / 3, 1 / 3, 1 / 3, 1 / 3)
    not_ok = evaluate([(sample, row([(0, 5), (13, 23)], [(0, *man, 0.9)], status="teacher_error"))])
    assert recalls(not_ok) == (0.0, 0.0, 0.0, 0.0)


def test_error_split_parser_miss_teacher_miss_grounded() -> None:
    man, ball, dog, throws = (10, 10, 40, 90), (50, 60, 60, 70), (60, 60, 90, 90), (0, 0, 5, 5)
    sample = gold(phrase(0, 5, man), phrase(6, 12, throws), phrase(13, 23, ball), phrase(27, 32, dog))
    extracted = [(0, 5), (11, 15), (15, 23), (25, 32)]  # "a man", "s a ", "red ball", "o a dog"
    boxes = [
        (0, *man, 0.9),  # "a man": grounded
        (3, 0, 0, 20, 20, 0.8), (3, *dog, 0.7),  # "a dog" -> "o a dog": best box misses -> teacher miss
        (1, *ball, 0.9),  # "s a " overlaps "a red ball" by 2 and "throws" by 1: less than "red ball"'s 8
    ]
    # "throws" [6,12) overlaps "s a " [11,15) by one character: aligned, no good box -> teacher miss.
    # "a red ball" [13,23) -> "red ball" [15,23) (overlap 8), which has no box -> teacher miss.
    result = evaluate([(sample, row(extracted, boxes))])
    assert (result["parser_miss"], result["teacher_miss"], result["grounded"]) == (0.0, 0.75, 0.25)
    assert (result["parser_miss_count"], result["teacher_miss_count"], result["grounded_count"]) == (0, 3, 1)
    assert result["recall_at_5"] == 0.5  # the dog's second box hits
    dropped = evaluate([(sample, row([(0, 5), (25, 32)], boxes[:3]))])  # nothing covers "throws", "a red ball"
    assert (dropped["parser_miss"], dropped["teacher_miss"], dropped["grounded"]) == (0.5, 0.25, 0.25)


def test_alignment_takes_the_most_overlap_and_ties_go_to_the_earlier_phrase() -> None:
    sample = gold(phrase(13, 23, (50, 50, 60, 60)))  # "a red ball" [13,23)
    boxes = [(0, 0, 0, 5, 5, 0.9), (1, 50, 50, 60, 60, 0.9)]  # phrase 0's box misses, phrase 1's hits
    # "s a " [11,15) overlaps 2 characters, "red ball to" [15,26) 8: the second phrase is aligned.
    assert evaluate([(sample, row([(11, 15), (15, 26)], boxes))])["grounded"] == 1.0
    # "a red" [13,18) and " ball" [18,23) overlap 5 each: a tie, the earlier phrase is aligned.
    tie = evaluate([(sample, row([(13, 18), (18, 23)], boxes))])
    assert (tie["grounded"], tie["teacher_miss"]) == (0.0, 1.0)


def threshold_case() -> list[tuple[GoldSample, dict]]:
    """Sample 1: "a red ball" (gold G1, G2), "a dog" (gold G3); "a man" is extracted but not gold.
    Sample 2: "a dog" (gold G4). Boxes, judged by hand:
      ball: 0.9 on G1 (TP), 0.8 on G1 again (FP: G1 taken), 0.35 on G2 (TP)
      dog:  0.6 off G3 (FP); sample 2's dog: 0.5 on G4 (TP)
      man:  0.95, unjudged (no gold phrase)."""
    g1, g2, g3, g4 = (0, 0, 10, 10), (20, 20, 30, 30), (50, 50, 60, 60), (40, 40, 80, 80)
    one = gold(phrase(13, 23, g1, g2), phrase(27, 32, g3), key="one_0")
    two = gold(phrase(27, 32, g4), key="two_0")
    row_one = row([(0, 5), (13, 23), (27, 32)], [
        (1, *g1, 0.8), (1, *g2, 0.35), (1, *g1, 0.9), (2, 70, 70, 80, 80, 0.6), (0, 1, 1, 9, 9, 0.95)], key="one_0")
    row_two = row([(27, 32)], [(0, *g4, 0.5)], key="two_0")
    return [(one, row_one), (two, row_two)]


def test_threshold_curve_by_hand() -> None:
    result = evaluate(threshold_case(), target_precision=0.9)
    assert (result["judged_boxes"], result["unjudged_boxes"], result["gold_boxes"]) == (5, 1, 4)
    curve = {point["threshold"]: point for point in result["threshold_curve"]}
    assert len(curve) == 101 and min(curve) == 0.0 and max(curve) == 1.0
    # threshold: (precision, recall, boxes per sample); 6 stored boxes over 2 samples at 0.
    expected = {
        0.0: (3 / 5, 3 / 4, 3.0), 0.35: (3 / 5, 3 / 4, 3.0), 0.36: (2 / 4, 2 / 4, 2.5), 0.5: (2 / 4, 2 / 4, 2.5),
        0.51: (1 / 3, 1 / 4, 2.0), 0.61: (1 / 2, 1 / 4, 1.5), 0.81: (1.0, 1 / 4, 1.0), 0.9: (1.0, 1 / 4, 1.0),
        0.91: (None, 0.0, 0.5), 0.96: (None, 0.0, 0.0), 1.0: (None, 0.0, 0.0),
    }
    for threshold, (precision, recall, per_sample) in expected.items():
        point = curve[threshold]
        assert (point["precision"], point["recall"], point["boxes_per_sample"]) == pytest.approx(
            (precision, recall, per_sample)), threshold
    # The lowest threshold with precision >= 0.9 is 0.81, where precision first reaches 1.
    assert result["threshold_for_target_precision"] == 0.81
    assert (result["boxes_per_sample_at_target"], result["recall_at_target"]) == (1.0, 0.25)
    assert (result["grounded_count"], result["teacher_miss_count"]) == (2, 1)  # the dog's best box misses G3


@pytest.mark.parametrize("target, threshold", [(0.5, 0.0), (0.6, 0.0), (0.61, 0.81), (1.01, None), (None, None)])
def test_target_precision_choice(target: float | None, threshold: float | None) -> None:
    result = evaluate(threshold_case(), target_precision=target)
    assert result["threshold_for_target_precision"] == threshold
    assert (result["recall_at_target"] is None) == (threshold is None)


def test_reliability_bins() -> None:
    target = (20, 20, 60, 60)
    scores_hits = [(0.0, True), (0.05, False), (0.1, True), (0.42, True), (0.48, False), (0.49, False), (1.0, True)]
    # One gold phrase per box, so every box is judged on its own gold box.
    spans = [(i * 4, i * 4 + 3) for i in range(len(scores_hits))]
    caption = "abc " * len(scores_hits)
    sample = gold(*(phrase(s, e, target, caption=caption) for s, e in spans), caption=caption)
    boxes = [(i, *(target if hit else (0, 0, 5, 5)), score) for i, (score, hit) in enumerate(scores_hits)]
    bins = evaluate([(sample, row(spans, boxes, caption=caption))])["reliability"]
    assert [(b["lo"], b["hi"]) for b in bins] == [(i / 10, (i + 1) / 10) for i in range(10)]
    assert [b["boxes"] for b in bins] == [2, 1, 0, 0, 3, 0, 0, 0, 0, 1]
    assert bins[0]["precision"] == 0.5 and bins[0]["mean_score"] == pytest.approx(0.025)
    assert bins[1]["precision"] == 1.0  # 0.1 opens the second bin
    assert bins[4]["precision"] == pytest.approx(1 / 3) and bins[4]["mean_score"] == pytest.approx(1.39 / 3)
    assert bins[9]["precision"] == 1.0  # 1.0 closes the last bin
    assert bins[2]["precision"] is None and bins[2]["mean_score"] is None


def test_match_rows_by_key_then_by_caption_and_size() -> None:
    by_key = gold(key="a_0", caption="a cat .")
    by_caption = gold(key="b_0", caption="a dog .", size=(640, 480))
    wrong_size = gold(key="c_0", caption="a cow .", size=(640, 480))
    twin = gold(key="d_0", caption="a dog .", size=(640, 480))  # same caption and size: the row is taken
    rows = [row([], [], key="000000002", caption="a dog .", size=(640, 480)),
            row([], [], key="000000003", caption="a cow .", size=(480, 640)),
            row([], [], key="a_0", caption="something else")]
    pairs = match_rows([by_key, by_caption, wrong_size, twin], rows)
    assert [(g.key, r["key"]) for g, r in pairs] == [("a_0", "a_0"), ("b_0", "000000002")]
    # A row serves one gold sample: not a second one by caption, nor a repeated gold key.
    assert match_rows([gold(key="x_0", caption="something else"), by_key], rows) == [(by_key, rows[2])]
    assert match_rows([by_key, by_key], rows) == [(by_key, rows[2])]


def test_boxes_are_rescaled_from_the_row_frame_to_the_gold_frame() -> None:
    # The labelled image was resized to half: the row's box (5,5,20,45) is the gold (10,10,40,90).
    sample = gold(phrase(0, 5, (10, 10, 40, 90)), size=(100, 100))
    result = evaluate([(sample, row([(0, 5)], [(0, 5, 5, 20, 45, 0.9)], size=(50, 50)))])
    assert (result["recall_at_1"], result["caption_mismatches"]) == (1.0, 0)
    other_caption = row([(0, 5)], [(0, 5, 5, 20, 45, 0.9)], caption=CAPTION.upper(), size=(50, 50))
    assert evaluate([(sample, other_caption)])["caption_mismatches"] == 1


def test_no_pairs_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="^no gold sample matches a row of the output: "):
        evaluate([])


def test_real_flickr30k_gold_as_predictions() -> None:
    if not FLICKR_19.exists():
        pytest.skip(f"needs {FLICKR_19}")
    samples = read_gold(str(FLICKR_19), "flickr30k")
    pairs = [(s, row([(p.start, p.end) for p in s.phrases],
                     [(i, *box, 0.9) for i, p in enumerate(s.phrases) for box in p.boxes],
                     key=s.key, caption=s.caption, size=(s.width, s.height))) for s in samples]
    result = evaluate(pairs)
    assert (result["samples"], result["gold_phrases"]) == (95, 270)
    assert recalls(result) == (1.0, 1.0, 1.0, 1.0)
    assert result["threshold_curve"][0]["precision"] == 1.0 and result["threshold_curve"][0]["recall"] == 1.0
    assert result["per_type"]["people"]["count"] > 0 and sum(t["count"] for t in result["per_type"].values()) >= 270


COCO_GOLD = {
    "images": [{"id": 1, "width": 200, "height": 100}, {"id": 2, "width": 100, "height": 100}],
    "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 3, "bbox": [10, 10, 50, 40], "area": 2000, "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 5, "bbox": [100, 20, 60, 60], "area": 3600, "iscrowd": 0},
        {"id": 12, "image_id": 2, "category_id": 5, "bbox": [0, 0, 30, 30], "area": 900, "iscrowd": 0},
        {"id": 13, "image_id": 2, "category_id": 3, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": 1},
    ],
}


def test_coco_ap_equals_pycocotools_on_the_same_detections() -> None:
    prompt = "cat. Dog . tree."
    rows = [
        row([(0, 3), (5, 9), (12, 16)], [(0, 12, 12, 60, 50, 0.9), (1, 100, 25, 160, 85, 0.8),
                                         (1, 0, 0, 20, 20, 0.7), (2, 0, 0, 100, 100, 0.99)],
            key="1", caption=prompt, size=(200, 100)),
        # Image 2 labelled at half size: boxes double into the gold frame.
        row([(0, 3), (5, 9)], [(1, 0, 0, 15, 15, 0.6), (0, 25, 25, 45, 45, 0.95)], key="2", caption=prompt,
            size=(50, 50)),
        row([(0, 3)], [(0, 0, 0, 10, 10, 0.9)], key="99", caption=prompt),  # no such image
    ]
    detections = [  # by hand: "tree" names no category, key 99 no image
        {"image_id": 1, "category_id": 3, "bbox": [12, 12, 48, 38], "score": 0.9},
        {"image_id": 1, "category_id": 5, "bbox": [100, 25, 60, 60], "score": 0.8},
        {"image_id": 1, "category_id": 5, "bbox": [0, 0, 20, 20], "score": 0.7},
        {"image_id": 2, "category_id": 5, "bbox": [0, 0, 30, 30], "score": 0.6},
        {"image_id": 2, "category_id": 3, "bbox": [50, 50, 40, 40], "score": 0.95},
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = copy.deepcopy(COCO_GOLD)
        truth.createIndex()
        direct = COCOeval(truth, truth.loadRes(detections), "bbox")
        direct.evaluate()
        direct.accumulate()
        direct.summarize()
    result = coco_ap(COCO_GOLD, rows)
    assert result["detections"] == 5
    assert (result["AP"], result["AP50"]) == (pytest.approx(direct.stats[0]), pytest.approx(direct.stats[1]))
    assert 0 < result["AP"] < result["AP50"] <= 1
    assert COCO_GOLD["annotations"][0].keys() == {"id", "image_id", "category_id", "bbox", "area", "iscrowd"}


def test_coco_ap_without_detections_is_zero() -> None:
    assert coco_ap(COCO_GOLD, [row([(0, 5)], [(0, 0, 0, 5, 5, 0.9)], key="1")]) == {
        "AP": 0.0, "AP50": 0.0, "detections": 0}
