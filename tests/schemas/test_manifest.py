"""The manifest (a shard's commit marker) and the run record read back as written."""

from __future__ import annotations

import json

from schemas import Manifest, RunRecord
from schemas.manifest import OutputFile


def _manifest(**extra) -> Manifest:
    return Manifest(shard="00000", input_uri="s3://b/00000.tar", config_hash="h", teacher_id="t", teacher_revision="r",
                    samples=3, status_counts={"ok": 2, "decode_error": 1}, boxes=4,
                    parquet=OutputFile("parquet/00000.parquet", 10, "aa"), tar=OutputFile("wds/00000.tar", 20, "bb"),
                    tar_samples=2, timings={"read": 0.1}, run_id="run", created_at="2026-12-01T00:00:00+00:00", **extra)


def test_manifest_round_trips_and_ignores_fields_it_does_not_know() -> None:
    m = _manifest(settings={"box_threshold": 0.1})
    assert Manifest.from_json(m.to_json()) == m
    raw = json.loads(m.to_json())
    raw["added_by_a_later_version"] = 1
    assert Manifest.from_json(json.dumps(raw)) == m


def test_damage_names_why_the_input_was_incomplete() -> None:
    assert _manifest().damage is None
    assert _manifest(truncated_input=True).damage == "input truncated"
    assert _manifest(input_error="tar cut after 3 samples").damage == "tar cut after 3 samples"


def test_run_record_is_sorted_json() -> None:
    record = RunRecord(run_id="r", config={"b": 1, "a": 2}, config_hash="h", versions={}, started_at="s", finished_at="f",
                       shards_total=1, shards_done=1, shards_skipped=0, shards_failed={}, status_counts={"ok": 1},
                       boxes=0, samples=1, seconds=1.0)
    text = record.to_json().decode()
    assert json.loads(text)["config"] == {"a": 2, "b": 1} and text.index('"boxes"') < text.index('"run_id"')
