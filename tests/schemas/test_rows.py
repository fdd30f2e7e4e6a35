"""The row schema, the closed status set and the tar's JSON record: the one definition in `schemas`."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from schemas import ROW_SCHEMA, SCHEMA_VERSION, Status, row_schema, row_to_json_record, rows_to_table, schema_metadata
from schemas.rows import COLUMNS, DECODED_STATUSES, empty_row

CONTRACT = ["key", "shard", "url", "caption", "width", "height", "status", "error", "phrases", "boxes"]


def test_the_contract_columns_come_first_with_their_types() -> None:
    assert COLUMNS[: len(CONTRACT)] == CONTRACT
    assert ROW_SCHEMA.field("phrases").type == pa.list_(pa.struct([("text", pa.string()), ("start", pa.int32()), ("end", pa.int32())]))
    box = ROW_SCHEMA.field("boxes").type.value_type
    assert [f.name for f in box] == ["phrase", "x0", "y0", "x1", "y1", "score"]
    assert box.field("phrase").type == pa.int32() and box.field("score").type == pa.float32()


def test_statuses_are_a_closed_set() -> None:
    assert Status.values() == ["ok", "no_caption", "no_phrases", "missing_image", "decode_error", "image_too_large",
                               "teacher_error", "duplicate_key", "filtered"]
    assert Status.FILTERED in DECODED_STATUSES  # a filtered pair keeps its image and boxes in the tar
    assert Status.OK in DECODED_STATUSES and Status.DECODE_ERROR not in DECODED_STATUSES
    row = dict(empty_row("k", "s"), status="not_a_status")
    with pytest.raises(ValueError, match="unknown status 'not_a_status'"):
        rows_to_table([row])


def test_a_table_carries_the_metadata_and_round_trips() -> None:
    row = empty_row("000001", "00000")
    row.update(status="ok", caption="a dog", width=10, height=8, phrases=[{"text": "a dog", "start": 0, "end": 5}],
               boxes=[{"phrase": 0, "x0": 1.0, "y0": 2.0, "x1": 3.0, "y1": 4.0, "score": 0.5}])
    table = rows_to_table([row], schema_metadata("teacher-x", "abc123", {"shard": "00000"}))
    meta = table.schema.metadata
    assert meta[b"teacher"] == b"teacher-x" and meta[b"config_hash"] == b"abc123" and meta[b"schema_version"] == SCHEMA_VERSION.encode()
    assert table.to_pylist() == [row]


def test_the_json_record_is_the_row_with_finite_numbers() -> None:
    row = dict(empty_row("k", "s"), status="ok", boxes=[{"phrase": 0, "x0": math.nan, "y0": 0.0, "x1": math.inf, "y1": 1.0, "score": 0.5}])
    record = json.loads(row_to_json_record(row))
    assert record["schema_version"] == SCHEMA_VERSION and record["key"] == "k"
    assert record["boxes"] == [{"phrase": 0, "x0": 0.0, "y0": 0.0, "x1": 0.0, "y1": 1.0, "score": 0.5}]
    assert set(record) == set(COLUMNS) | {"schema_version"}


def test_column_groups_add_their_columns_only_when_asked() -> None:
    assert row_schema() == ROW_SCHEMA
    full = row_schema(frozenset({"ref_exps", "phrase_audit", "rescore"}))
    assert full.names == COLUMNS + ["ref_exps", "dropped_phrases", "parse_truncated_at", "image_text_score"]
    assert [f.name for f in full.field("boxes").type.value_type] == ["phrase", "x0", "y0", "x1", "y1", "score",
                                                                     "clip_score", "rescored"]
    with pytest.raises(ValueError, match="unknown column group"):
        row_schema(frozenset({"nope"}))
    row = empty_row("k", "s", frozenset({"ref_exps", "rescore"}))
    row.update(status="ok", ref_exps=[{"text": "a dog", "start": 0, "end": 5, "phrase": 0}], image_text_score=0.25,
               boxes=[{"phrase": 0, "x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0, "score": 0.5, "clip_score": 0.2,
                       "rescored": 0.3162}])
    table = rows_to_table([row], groups=frozenset({"ref_exps", "rescore"}))
    assert table.to_pylist()[0]["ref_exps"] == row["ref_exps"]
    record = json.loads(row_to_json_record(row))
    assert record["image_text_score"] == 0.25 and record["ref_exps"] == row["ref_exps"]
