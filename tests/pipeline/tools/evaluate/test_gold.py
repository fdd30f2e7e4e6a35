"""Gold readers: each format on a small inline file, the real Flickr30k file, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.tools.evaluate.gold import FORMATS, GoldError, GoldPhrase, read_gold
from tests.project import SHARED

FLICKR_19 = SHARED / "flickr30k_19img" / "captions_gold_phrases.jsonl"


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


FLICKR_LINE = {
    "image_id": "100652400", "split": "val", "sent_idx": 1, "width": 375, "height": 500,
    "caption": "A man and two dogs in the street .",
    "phrases": [
        [0, 5, "A man", "people", "197", 0, {"boxes": [[53, 45, 110, 203]], "scene": False, "nobox": False}],
        [10, 18, "two dogs", "animals", "198", 3,
         {"boxes": [[1, 90, 30, 120], [40, 90, 70, 125]], "scene": False, "nobox": False}],
        [22, 32, "the street", "scene", "199", 6, {"boxes": [], "scene": True, "nobox": False}],
    ],
}


def test_flickr30k_keeps_boxed_phrases_with_the_boxes_as_they_stand(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "gold.jsonl", [FLICKR_LINE, {**FLICKR_LINE, "sent_idx": 2, "file": "images/x.jpg"}])
    first, second = read_gold(path, "flickr30k")
    assert (first.key, first.image_id, first.width, first.height, first.file) == ("100652400_1", "100652400", 375, 500,
                                                                                  None)
    assert (second.key, second.file) == ("100652400_2", "images/x.jpg")
    # "the street" has no box: left out. The 1-based VOC numbers are kept unchanged (MDETR's evaluator).
    assert first.phrases == (
        GoldPhrase(0, 5, "A man", "people", ((53.0, 45.0, 110.0, 203.0),)),
        GoldPhrase(10, 18, "two dogs", "animals", ((1.0, 90.0, 30.0, 120.0), (40.0, 90.0, 70.0, 125.0))),
    )


def test_real_flickr30k_file_counts_and_spans() -> None:
    if not FLICKR_19.exists():
        pytest.skip(f"needs {FLICKR_19}")
    samples = read_gold(str(FLICKR_19), "flickr30k")
    assert len(samples) == 95
    assert sum(len(s.phrases) for s in samples) == 270  # "There are 270 phrases with boxes" (its README)
    assert len({s.key for s in samples}) == 95
    for sample in samples:
        assert sample.file == f"images/{sample.image_id}.jpg"
        for phrase in sample.phrases:
            assert sample.caption[phrase.start:phrase.end] == phrase.text
            assert phrase.boxes and all(1 <= b[0] < b[2] <= sample.width and 1 <= b[1] < b[3] <= sample.height
                                        for b in phrase.boxes)


COCO_DOC = {
    "images": [
        {"id": 7, "width": 640, "height": 480, "file_name": "000007.jpg"},
        {"id": 9, "width": 320, "height": 200, "file_name": "000009.jpg"},
        {"id": 11, "width": 100, "height": 100, "file_name": "000011.jpg"},  # only a crowd box: no sample
    ],
    "categories": [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 20, 30, 40], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 18, "bbox": [100, 100, 10, 10], "iscrowd": 0},
        {"id": 4, "image_id": 7, "category_id": 17, "bbox": [1, 1, 2, 2], "iscrowd": 1},
        {"id": 5, "image_id": 9, "category_id": 17, "bbox": [5.5, 6.5, 10, 20]},
        {"id": 6, "image_id": 11, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 1},
    ],
}


def test_coco_one_sample_per_image_with_a_detection_prompt(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(COCO_DOC))
    image7, image9 = read_gold(str(path), "coco")
    # The crowd cat of image 7 is no phrase; categories by name; spans into the prompt.
    assert (image7.key, image7.image_id, image7.caption, image7.file) == ("7", "7", "dog. person.", "000007.jpg")
    assert (image7.width, image7.height) == (640, 480)
    assert image7.phrases == (
        GoldPhrase(0, 3, "dog", "dog", ((10.0, 20.0, 40.0, 60.0), (100.0, 100.0, 110.0, 110.0))),
        GoldPhrase(5, 11, "person", "person", ((0.0, 0.0, 5.0, 5.0),)),
    )
    assert image9.caption == "cat."
    assert image9.phrases == (GoldPhrase(0, 3, "cat", "cat", ((5.5, 6.5, 15.5, 26.5),)),)


def test_odvg_one_phrase_per_span_set(tmp_path: Path) -> None:
    caption = "a dog chases a red ball and a dog"
    record = {
        "filename": "00042/000420007.jpg", "height": 300, "width": 400,
        "grounding": {"caption": caption, "regions": [
            {"bbox": [1, 2, 3, 4], "phrase": "a dog", "tokens_positive": [[0, 5]]},
            {"bbox": [5, 6, 7, 8], "phrase": "a red ball", "tokens_positive": [[13, 23]]},
            {"bbox": [9, 10, 11, 12], "phrase": "a dog", "tokens_positive": [[0, 5]]},
            {"bbox": [20, 20, 30, 30], "phrase": "dogs", "tokens_positive": [[28, 33], [0, 5]]},
        ]},
    }
    (sample,) = read_gold(write_jsonl(tmp_path / "odvg.jsonl", [record]), "odvg")
    assert (sample.key, sample.image_id, sample.file, sample.width, sample.height) == (
        "000420007", "000420007", "00042/000420007.jpg", 400, 300)
    assert sample.phrases == (
        GoldPhrase(0, 5, "a dog", None, ((1.0, 2.0, 3.0, 4.0), (9.0, 10.0, 11.0, 12.0))),
        GoldPhrase(0, 33, caption, None, ((20.0, 20.0, 30.0, 30.0),)),  # two spans: first start to last end
        GoldPhrase(13, 23, "a red ball", None, ((5.0, 6.0, 7.0, 8.0),)),
    )


@pytest.mark.parametrize("fmt, content, words", [
    ("flickr30k", "", ["empty"]),
    ("flickr30k", "\n  \n", ["empty"]),
    ("flickr30k", json.dumps(FLICKR_LINE) + "\n{not json\n", ["line 2", "not valid JSON"]),
    ("flickr30k", "[1, 2]\n", ["line 1", "not a JSON object"]),
    ("flickr30k", json.dumps({k: v for k, v in FLICKR_LINE.items() if k != "caption"}), ["line 1", "'caption'"]),
    ("flickr30k", json.dumps({**FLICKR_LINE, "phrases": [[0, 4, "A man", "people", "1", 0, {"boxes": []}]]}),
     ["line 1", "not caption[0:4]"]),
    ("flickr30k", json.dumps({**FLICKR_LINE, "phrases": [[0, 99, "x", "people", "1", 0, {"boxes": []}]]}),
     ["line 1", "outside its caption"]),
    ("flickr30k", json.dumps({**FLICKR_LINE, "phrases": [[0, 5, "A man", "people", "1", 0, {"boxes": [[1, 2]]}]]}),
     ["line 1", "malformed"]),
    ("coco", "{\"images\": [", ["not valid JSON"]),
    ("coco", json.dumps({"images": [], "annotations": []}), ["'categories'"]),
    ("coco", json.dumps({**COCO_DOC, "annotations": []}), ["no image with a non-crowd box"]),
    ("coco", json.dumps({**COCO_DOC, "annotations": [{**COCO_DOC["annotations"][0], "category_id": 99}]}),
     ["unknown category 99"]),
    ("odvg", json.dumps({"filename": "a.jpg", "height": 1, "width": 1, "grounding": {"caption": "a"}}),
     ["line 1", "'regions'"]),
])
def test_bad_input_is_one_gold_error_sentence(tmp_path: Path, fmt: str, content: str, words: list[str]) -> None:
    path = tmp_path / "gold"
    path.write_text(content)
    with pytest.raises(GoldError) as caught:
        read_gold(str(path), fmt)
    message = str(caught.value)
    assert str(path) in message and all(word in message for word in words), message
    assert "\n" not in message


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GoldError, match=r"unknown gold format 'voc' .*use one of flickr30k, coco, odvg"):
        read_gold(str(tmp_path / "x.json"), "voc")
    with pytest.raises(GoldError, match="does not exist"):
        read_gold(str(tmp_path / "absent.jsonl"), "flickr30k")
    assert FORMATS == ("flickr30k", "coco", "odvg")
