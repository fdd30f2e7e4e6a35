"""Gold readers for `glip-evaluate`: Flickr30k Entities JSONL, COCO instances JSON, ODVG JSONL.

Each reader turns its format into the same `GoldSample`s (a caption, its image size, and the
caption's gold phrases with their boxes), so the metrics in `pipeline.tools.evaluate.metrics` never
see a format. Boxes are pixel xyxy in the gold file's width x height frame.

Box convention for Flickr30k Entities: the XML boxes are 1-based inclusive VOC pixel values.
MDETR's evaluator (datasets/flickr_eval.py, which GLIP copies unchanged) reads them with
`get_annotations` as `[xmin, ymin, xmax, ymax]` ints and feeds them, untouched, to `box_iou`, whose
`box_area` is `(x2 - x1) * (y2 - y1)`: no -1 shift and no +1 width, i.e. the VOC numbers are used
as continuous coordinates as they stand (MDETR's pre-training conversion, flickr_combined.py, does
the same: `w = xmax - xmin`). We do exactly that, so that recall@k here is the number the GLIP and
MDETR papers report; "correcting" the box by a pixel would change IoUs near 0.5 and make our
numbers incomparable with theirs.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TypeVar

import storage

FORMATS = ("flickr30k", "coco", "odvg")

Box = tuple[float, float, float, float]
T = TypeVar("T")


class GoldError(ValueError):
    """Gold input that cannot be evaluated against; the message is one sentence naming the input
    and the fix, which the CLI prints as is."""


@dataclass(frozen=True)
class GoldPhrase:
    start: int
    end: int
    text: str  # caption[start:end] == text
    type: str | None  # Flickr30k type ("people", "vehicles/scene"), COCO category name, None for ODVG
    boxes: tuple[Box, ...]  # pixel xyxy, continuous coordinates, in the sample's width x height frame


@dataclass(frozen=True)
class GoldSample:
    key: str  # flickr30k: f"{image_id}_{sent_idx}"; coco: str(image id); odvg: filename stem
    image_id: str
    caption: str
    width: int
    height: int
    phrases: tuple[GoldPhrase, ...]  # only phrases that have at least one box
    file: str | None  # the image file the gold file names, when it names one


def read_gold(path: str, fmt: str) -> list[GoldSample]:
    """The gold samples of `path` (local or s3://) in format `fmt` (one of FORMATS), in file order."""
    if fmt not in FORMATS:
        raise GoldError(f"unknown gold format {fmt!r} for {path}: use one of {', '.join(FORMATS)}")
    text = _read_text(path)
    if fmt == "coco":
        doc = _parse_json(text, path)
        return _guarded(functools.partial(_coco_samples, doc, path), path)
    read_record = _flickr_sample if fmt == "flickr30k" else _odvg_sample
    samples = []
    for where, record in _jsonl_records(text, path):
        samples.append(_guarded(functools.partial(read_record, record, where), where))
    return samples


def _read_text(path: str) -> str:
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError as exc:
        raise GoldError(f"gold file {path} does not exist: check the path") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GoldError(f"gold file {path} is not UTF-8 text: give the JSON or JSONL file itself") from exc
    if not text.strip():
        raise GoldError(f"gold file {path} is empty: give a file with at least one sample")
    return text


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if exc.lineno == 1 else f"line {exc.lineno} column {exc.colno}"
        raise GoldError(f"{where} is not valid JSON ({exc.msg} at {at}): fix or re-export it") from exc


def _jsonl_records(text: str, path: str) -> Iterator[tuple[str, dict]]:
    """(where, record) per non-blank line; `where` names the file and the 1-based line number.

    Split on "\n" only: str.splitlines would also split inside a caption holding U+2028 or U+0085,
    which JSON writers leave unescaped."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        record = _parse_json(line, where)
        if not isinstance(record, dict):
            raise GoldError(f"{where} is not a JSON object: each line must be one sample")
        yield where, record


def _guarded(read: Callable[[], T], where: str) -> T:
    """Run `read`, turning a missing key or a malformed value (a box that is not four numbers, a
    span that is not two ints) into one GoldError sentence instead of a traceback from deep in the
    reader."""
    try:
        return read()
    except GoldError:
        raise
    except KeyError as exc:
        raise GoldError(f"{where} is missing the field {exc.args[0]!r}: add it or choose the right format") from exc
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise GoldError(f"{where} has a malformed value ({exc!r}): fix it to the format's layout") from exc


def _box(values: Any) -> Box:
    x0, y0, x1, y1 = (float(v) for v in values)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"box {values} is not finite")
    return (x0, y0, x1, y1)


def _checked_span(caption: str, start: Any, end: Any, where: str) -> tuple[int, int]:
    start, end = int(start), int(end)
    if not 0 <= start < end <= len(caption):
        raise GoldError(f"{where} has the span [{start}, {end}) outside its caption: fix the offsets")
    return start, end


def _flickr_sample(record: dict, where: str) -> GoldSample:
    """One caption line. The phrase list is MDETR's `[start, end, text, type, entity_id,
    first_token, {"boxes", "scene", "nobox"}]`; boxes are kept as they stand (module docstring)."""
    caption = str(record["caption"])
    phrases = []
    for item in record["phrases"]:
        start, end = _checked_span(caption, item[0], item[1], where)
        if caption[start:end] != item[2]:
            raise GoldError(f"{where}: phrase {item[2]!r} is not caption[{start}:{end}]: fix the offsets")
        boxes = tuple(_box(b) for b in item[6]["boxes"])
        if boxes:
            phrases.append(GoldPhrase(start, end, item[2], str(item[3]), boxes))
    image_id = str(record["image_id"])
    return GoldSample(
        key=f"{image_id}_{record['sent_idx']}",
        image_id=image_id,
        caption=caption,
        width=int(record["width"]),
        height=int(record["height"]),
        phrases=tuple(phrases),
        file=record.get("file"),
    )


def _odvg_sample(record: dict, where: str) -> GoldSample:
    """One image line. Regions sharing a tokens_positive span set are one phrase; a phrase of
    several spans is stored as the stretch from its first start to its last end, so that
    caption[start:end] == text holds and the alignment (by character overlap) sees all of it."""
    grounding = record["grounding"]
    caption = str(grounding["caption"])
    boxes_by_spans: dict[tuple[tuple[int, int], ...], list[Box]] = {}
    for region in grounding["regions"]:
        spans = tuple(sorted(_checked_span(caption, s, e, where) for s, e in region["tokens_positive"]))
        if not spans:
            raise GoldError(f"{where} has a region with empty tokens_positive: give each region its span")
        boxes_by_spans.setdefault(spans, []).append(_box(region["bbox"]))
    phrases = []
    for spans, boxes in sorted(boxes_by_spans.items()):
        start, end = spans[0][0], max(e for _, e in spans)
        phrases.append(GoldPhrase(start, end, caption[start:end], None, tuple(boxes)))
    filename = str(record["filename"])
    stem = PurePosixPath(filename).stem
    return GoldSample(
        key=stem,
        image_id=stem,
        caption=caption,
        width=int(record["width"]),
        height=int(record["height"]),
        phrases=tuple(phrases),
        file=filename,
    )


def _coco_samples(doc: Any, path: str) -> list[GoldSample]:
    """One sample per image with at least one non-crowd box (an image without one has no prompt to
    label it with). The caption is the detection prompt of the categories present, by name
    ("cat. dog. person."); crowd boxes are left out of the phrases (COCO AP handles crowd itself)."""
    names = {c["id"]: str(c["name"]) for c in doc["categories"]}
    boxes: dict[Any, dict[str, list[Box]]] = {}
    for ann in doc["annotations"]:
        if ann.get("iscrowd"):
            continue
        if ann["category_id"] not in names:
            raise GoldError(f"{path}: annotation {ann.get('id')} names unknown category {ann['category_id']}: "
                            "add it to categories")
        x, y, w, h = _box(ann["bbox"])
        boxes.setdefault(ann["image_id"], {}).setdefault(names[ann["category_id"]], []).append((x, y, x + w, y + h))
    samples = []
    for image in doc["images"]:
        by_name = boxes.get(image["id"])
        if by_name:
            samples.append(_coco_sample(image, by_name))
    if not samples:
        raise GoldError(f"{path} has no image with a non-crowd box: give instances with annotations")
    return samples


def _coco_sample(image: dict, boxes_by_name: dict[str, list[Box]]) -> GoldSample:
    phrases, caption = [], ""
    for name in sorted(boxes_by_name):
        start = len(caption)
        caption += f"{name}. "
        phrases.append(GoldPhrase(start, start + len(name), name, name, tuple(boxes_by_name[name])))
    return GoldSample(
        key=str(image["id"]),
        image_id=str(image["id"]),
        caption=caption.rstrip(),
        width=int(image["width"]),
        height=int(image["height"]),
        phrases=tuple(phrases),
        file=image.get("file_name"),
    )
