"""Parquet row schema, status set and the JSON record written into the output tar.

The first ten columns (key ... boxes) are the fixed contract: their names and meanings never
change (ARCHITECTURE.md, "Contracts"). The columns after them are additions users asked for:
`original_width`, `original_height` (img2dataset's), `image_ext` (the image member's extension)
and `exif_orientation` (the EXIF orientation the boxes' frame was rotated by). `COLUMN_GROUPS`
are the columns that settings add, present only in outputs made with them.
"""

from __future__ import annotations

import enum
import json
import math
from typing import Any, Iterable, Mapping

import pyarrow as pa

SCHEMA_VERSION = "1.0"


class Status(str, enum.Enum):
    """Why a sample has (or has not) got boxes. A closed set: extend it here, with a test."""

    OK = "ok"
    NO_CAPTION = "no_caption"
    NO_PHRASES = "no_phrases"
    MISSING_IMAGE = "missing_image"
    DECODE_ERROR = "decode_error"
    IMAGE_TOO_LARGE = "image_too_large"
    TEACHER_ERROR = "teacher_error"
    DUPLICATE_KEY = "duplicate_key"
    FILTERED = "filtered"  # the pair failed a pair-level filter (--min-pair-score, --min-pair-clip); boxes kept

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> list[str]:
        return [s.value for s in cls]


# The one list of image member extensions, in the input and the output tars: the shard reader
# takes a member with one of these (the last part of its extension, lower-cased) as the sample's
# image, and a row's `image_ext` is one of them. An extension whose format Pillow cannot open
# still makes the member the image; its row then gets `decode_error`.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "avif"}
)

# Statuses whose image decoded: these rows are written to the output tar.
DECODED_STATUSES = frozenset({Status.OK, Status.NO_CAPTION, Status.NO_PHRASES, Status.TEACHER_ERROR, Status.FILTERED})

PHRASE_TYPE = pa.struct(
    [pa.field("text", pa.string()), pa.field("start", pa.int32()), pa.field("end", pa.int32())]
)
BOX_TYPE = pa.struct(
    [
        pa.field("phrase", pa.int32()),
        pa.field("x0", pa.float32()),
        pa.field("y0", pa.float32()),
        pa.field("x1", pa.float32()),
        pa.field("y1", pa.float32()),
        pa.field("score", pa.float32()),
    ]
)

ROW_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("phrases", pa.list_(PHRASE_TYPE), nullable=False),
        pa.field("boxes", pa.list_(BOX_TYPE), nullable=False),
        pa.field("original_width", pa.int32()),
        pa.field("original_height", pa.int32()),
        pa.field("image_ext", pa.string()),
        pa.field("exif_orientation", pa.int32()),
    ]
)

COLUMNS = [f.name for f in ROW_SCHEMA]

# Columns a setting adds (only then, so that outputs made without it keep their schema):
# "ref_exps" (--ref-exps), "phrase_audit" (--phrase-audit), "rescore" (--rescorer, which also adds
# `clip_score` and `rescored` to every box).
REF_EXP_TYPE = pa.struct([pa.field("text", pa.string()), pa.field("start", pa.int32()), pa.field("end", pa.int32()),
                          pa.field("phrase", pa.int32())])
DROPPED_PHRASE_TYPE = pa.struct([pa.field("text", pa.string()), pa.field("start", pa.int32()), pa.field("end", pa.int32()),
                                 pa.field("reason", pa.string())])
RESCORED_BOX_TYPE = pa.struct(list(BOX_TYPE) + [pa.field("clip_score", pa.float32()), pa.field("rescored", pa.float32())])
COLUMN_GROUPS: dict[str, list[pa.Field]] = {
    "ref_exps": [pa.field("ref_exps", pa.list_(REF_EXP_TYPE), nullable=False)],
    "phrase_audit": [pa.field("dropped_phrases", pa.list_(DROPPED_PHRASE_TYPE), nullable=False),
                     pa.field("parse_truncated_at", pa.int32())],
    "rescore": [pa.field("image_text_score", pa.float32())],
}


def final_score(box: Mapping[str, Any]) -> float:
    """A box's score for every use after labelling (thresholds, NMS, exports): `rescored` when CLIP
    re-scored it (YOLO-World's re-computed score), else the teacher's `score`."""
    rescored = box.get("rescored")
    return float(box["score"] if rescored is None else rescored)


def row_schema(groups: frozenset[str] = frozenset()) -> pa.Schema:
    """The row schema with the column groups a run's settings add, in a fixed order."""
    unknown = set(groups) - set(COLUMN_GROUPS)
    if unknown:
        raise ValueError(f"unknown column group(s) {sorted(unknown)}")
    fields = [pa.field("boxes", pa.list_(RESCORED_BOX_TYPE), nullable=False) if f.name == "boxes" and "rescore" in groups
              else f for f in ROW_SCHEMA]
    for group, extra in COLUMN_GROUPS.items():
        if group in groups:
            fields += extra
    return pa.schema(fields)


def empty_row(key: str, shard: str, groups: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A row with every column present; callers fill in what they know."""
    row: dict[str, Any] = {f.name: None for f in row_schema(groups)}
    row.update(key=key, shard=shard, caption="", phrases=[], boxes=[])
    for name in ("ref_exps", "dropped_phrases"):
        if name in row:
            row[name] = []
    return row


def schema_metadata(teacher_id: str, config_hash: str, extra: Mapping[str, str] | None = None) -> dict[bytes, bytes]:
    meta = {"schema_version": SCHEMA_VERSION, "teacher": teacher_id, "config_hash": config_hash}
    meta.update(extra or {})
    return {k.encode(): str(v).encode() for k, v in meta.items()}


def rows_to_table(rows: Iterable[Mapping[str, Any]], metadata: dict[bytes, bytes] | None = None,
                  groups: frozenset[str] = frozenset()) -> pa.Table:
    """Build the Arrow table for a shard; validates statuses against the closed set."""
    rows = list(rows)
    allowed = set(Status.values())
    for row in rows:
        if row["status"] not in allowed:
            raise ValueError(f"row {row['key']!r} has unknown status {row['status']!r}")
    schema = row_schema(groups)
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    table = pa.table(columns, schema=schema)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    return table


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


def row_to_json_record(row: Mapping[str, Any]) -> bytes:
    """The `KEY.json` record in the output tar: the Parquet row, as JSON (UTF-8)."""
    extra = [f.name for fields in COLUMN_GROUPS.values() for f in fields if f.name in row]
    record = {name: row.get(name) for name in COLUMNS + extra}
    record["boxes"] = [
        {k: (_finite(v) if isinstance(v, float) else v) for k, v in box.items()} for box in row.get("boxes") or []
    ]
    record["schema_version"] = SCHEMA_VERSION
    return json.dumps(record, ensure_ascii=False, sort_keys=False).encode("utf-8")
