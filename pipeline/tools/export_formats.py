"""Row -> record conversions for the four export formats (no I/O here; `pipeline.tools.export` writes).

Conventions, per format:
- ODVG (Open-GroundingDino / mmdetection "VG" mode): one JSON object per image,
  `{"filename", "height", "width", "grounding": {"caption", "regions": [{"bbox": [x0,y0,x1,y1]
  absolute pixels, "phrase", "tokens_positive": [[start, end]]}]}}`.
- MDETR: COCO JSON whose images carry `caption`, and whose annotations carry `bbox` [x,y,w,h]
  absolute pixels and `tokens_positive` [[start, end]] character spans into that caption; one
  category ("object"), as MDETR's pre-training annotations use.
- COCO detection: one category per distinct phrase (lower-cased text), `bbox` [x,y,w,h], plus the
  box's score kept as an extra annotation field.
- GRIT (Kosmos-2's GRIT-20M): `noun_chunks` and `ref_exps` as [start, end, x0, y0, x1, y1, score]
  with the box normalised to [0, 1] by width and height; a referring expression (from an output
  labelled with `--ref-exps`) takes the boxes of its head phrase, as GRIT's do. ODVG regions carry
  their phrase's referring expression too (`ref_exp`, `ref_exp_tokens_positive`) when there is one.
Character spans are Python `str` offsets into the caption, as the Parquet stores them. Every
score is the box's `final_score`: CLIP's re-computed one in a re-scored output.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from schemas import ROW_SCHEMA, final_score
from storage import safe_member_name

GRIT_SCHEMA = pa.schema(
    [ROW_SCHEMA.field(name).with_nullable(True) for name in ("key", "shard", "url", "caption", "width", "height")]
    + [pa.field("noun_chunks", pa.list_(pa.list_(pa.float64()))), pa.field("ref_exps", pa.list_(pa.list_(pa.float64())))]
)


def image_name(row: dict[str, Any]) -> str:
    """Where `--images` puts the row's image, relative to the image root: SHARD/KEY.EXT, with the
    key as the output tar names it (percent-encoded: never a path outside the image root)."""
    return f"{row['shard']}/{safe_member_name(row['key'])}.{row.get('image_ext') or 'jpg'}"


def _span(row: dict[str, Any], box: dict[str, Any]) -> tuple[str, list[list[int]]]:
    phrase = row["phrases"][box["phrase"]]
    return phrase["text"], [[int(phrase["start"]), int(phrase["end"])]]


def _xyxy(box: dict[str, Any]) -> list[float]:
    return [round(float(box[k]), 3) for k in ("x0", "y0", "x1", "y1")]


def _xywh(box: dict[str, Any]) -> list[float]:
    x0, y0, x1, y1 = _xyxy(box)
    return [x0, y0, round(x1 - x0, 3), round(y1 - y0, 3)]


def _ref_exp_of(row: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Phrase index -> its referring expression (outputs labelled with --ref-exps)."""
    return {r["phrase"]: r for r in row.get("ref_exps") or []}


def odvg_record(row: dict[str, Any], boxes: list[dict[str, Any]]) -> dict[str, Any]:
    regions = []
    ref_exps = _ref_exp_of(row)
    for box in boxes:
        text, spans = _span(row, box)
        region = {"bbox": _xyxy(box), "phrase": text, "tokens_positive": spans}
        ref = ref_exps.get(box["phrase"])
        if ref is not None:
            region.update(ref_exp=ref["text"], ref_exp_tokens_positive=[[int(ref["start"]), int(ref["end"])]])
        regions.append(region)
    return {
        "filename": image_name(row),
        "height": int(row["height"]),
        "width": int(row["width"]),
        "grounding": {"caption": row["caption"], "regions": regions},
    }


class CocoBuilder:
    """Accumulates a COCO-style JSON document; `mode` is "mdetr" or "coco"."""

    def __init__(self, mode: str) -> None:
        if mode not in ("mdetr", "coco"):
            raise ValueError(mode)
        self.mode = mode
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.categories: dict[str, int] = {"object": 1} if mode == "mdetr" else {}

    def _category(self, text: str) -> int:
        if self.mode == "mdetr":
            return 1
        name = text.lower()
        if name not in self.categories:
            self.categories[name] = len(self.categories) + 1
        return self.categories[name]

    def add(self, row: dict[str, Any], boxes: list[dict[str, Any]]) -> None:
        image_id = len(self.images) + 1
        image = {"id": image_id, "file_name": image_name(row), "height": int(row["height"]), "width": int(row["width"]),
                 "original_key": row["key"], "shard": row["shard"], "url": row.get("url")}
        if self.mode == "mdetr":
            image.update(caption=row["caption"], dataset_name="pseudo_glip")
        self.images.append(image)
        for box in boxes:
            text, spans = _span(row, box)
            x, y, w, h = _xywh(box)
            annotation = {"id": len(self.annotations) + 1, "image_id": image_id, "bbox": [x, y, w, h],
                          "area": round(w * h, 3), "iscrowd": 0, "category_id": self._category(text),
                          "score": round(final_score(box), 4)}
            if self.mode == "mdetr":
                annotation.update(tokens_positive=spans, phrase_ids=int(box["phrase"]), phrase=text)
            self.annotations.append(annotation)

    def document(self) -> dict[str, Any]:
        categories = [{"id": i, "name": name, "supercategory": "object"} for name, i in self.categories.items()]
        return {
            "info": {"description": f"GLIP-style pseudo-labels ({self.mode} export)"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": sorted(categories, key=lambda c: c["id"]),
        }


def grit_record(row: dict[str, Any], boxes: list[dict[str, Any]]) -> dict[str, Any]:
    width, height = float(row["width"]), float(row["height"])
    ref_exps = _ref_exp_of(row)

    def entry(start: int, end: int, box: dict[str, Any]) -> list[float]:
        return [float(start), float(end), box["x0"] / width, box["y0"] / height, box["x1"] / width,
                box["y1"] / height, final_score(box)]

    chunks, refs = [], []
    for box in boxes:
        _, [[start, end]] = _span(row, box)
        chunks.append(entry(start, end, box))
        if box["phrase"] in ref_exps:
            refs.append(entry(ref_exps[box["phrase"]]["start"], ref_exps[box["phrase"]]["end"], box))
    return {"key": row["key"], "shard": row["shard"], "url": row.get("url"), "caption": row["caption"],
            "width": int(row["width"]), "height": int(row["height"]), "noun_chunks": chunks, "ref_exps": refs}
