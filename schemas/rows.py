"""Parquet row schema, status set and the JSON record written into the output tar.

The first ten columns (key ... boxes) are the fixed contract: their names and meanings never
change (ARCHITECTURE.md, "Contracts"). The columns after them are additions users asked for:
`original_width`, `original_height` (img2dataset's), `image_ext` (the image member's extension)
and `exif_orientation` (the EXIF orientation the boxes' frame was rotated by).
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

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> list[str]:
        return [s.value for s in cls]


# Statuses whose image decoded: these rows are written to the output tar.
DECODED_STATUSES = frozenset({Status.OK, Status.NO_CAPTION, Status.NO_PHRASES, Status.TEACHER_ERROR})

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


def empty_row(key: str, shard: str) -> dict[str, Any]:
    """A row with every column present; callers fill in what they know."""
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row.update(key=key, shard=shard, caption="", phrases=[], boxes=[])
    return row


def schema_metadata(teacher_id: str, config_hash: str, extra: Mapping[str, str] | None = None) -> dict[bytes, bytes]:
    meta = {"schema_version": SCHEMA_VERSION, "teacher": teacher_id, "config_hash": config_hash}
    meta.update(extra or {})
    return {k.encode(): str(v).encode() for k, v in meta.items()}


def rows_to_table(rows: Iterable[Mapping[str, Any]], metadata: dict[bytes, bytes] | None = None) -> pa.Table:
    """Build the Arrow table for a shard; validates statuses against the closed set."""
    rows = list(rows)
    allowed = set(Status.values())
    for row in rows:
        if row["status"] not in allowed:
            raise ValueError(f"row {row['key']!r} has unknown status {row['status']!r}")
    columns = {name: [row.get(name) for row in rows] for name in COLUMNS}
    table = pa.table(columns, schema=ROW_SCHEMA)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    return table


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


def row_to_json_record(row: Mapping[str, Any]) -> bytes:
    """The `KEY.json` record in the output tar: the Parquet row, as JSON (UTF-8)."""
    record = {name: row.get(name) for name in COLUMNS}
    record["boxes"] = [
        {k: (_finite(v) if isinstance(v, float) else v) for k, v in box.items()} for box in row.get("boxes") or []
    ]
    record["schema_version"] = SCHEMA_VERSION
    return json.dumps(record, ensure_ascii=False, sort_keys=False).encode("utf-8")
