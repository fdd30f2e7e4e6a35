"""Hostile input through the whole job: every sample gets the right status, nothing escapes
the output root, a truncated tar gives rows up to the cut and is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from jobs.label_cc12m import main
from tests.hostile_corpus import hostile_samples, truncate_tar, write_hostile_shard
from tests.jobs.output_checks import check_output
from tests.project import FAST_FLAGS


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_hostile_shard_statuses_and_containment(tmp_path, tiny_teacher, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    expected = write_hostile_shard(inputs / "00000.tar")
    truncate_tar(inputs / "00000.tar", inputs / "00001.tar", 0.6)
    out = tmp_path / "work" / "out"
    outside_before = _files(tmp_path)
    code = main(["--input", str(inputs / "*.tar"), "--output", str(out), "--teacher", tiny_teacher,
                 "--runner", "inprocess", "--no-progress", *FAST_FLAGS])
    assert code == 0
    err = capsys.readouterr().err
    assert "WARNING shard 00001" in err and "truncated" in err

    rows = {r["key"]: r for r in pq.read_table(out / "parquet" / "00000.parquet").to_pylist()}
    got = {k: r["status"] for k, r in rows.items()}
    assert got == expected
    for sample in hostile_samples():
        row = rows[sample.key]
        if sample.size is not None and row["status"] == "ok":
            assert (row["width"], row["height"]) == sample.size, sample.key
            assert row["exif_orientation"] == sample.orientation, sample.key
    long_rows = [r for r in rows.values() if len(r["caption"]) >= 50_000]
    assert long_rows and all(r["caption"][p["start"]:p["end"]] == p["text"] for r in long_rows for p in r["phrases"])

    cut = pq.read_table(out / "parquet" / "00001.parquet").to_pylist()
    manifest = json.loads((out / "_manifests" / "00001.json").read_text())
    assert manifest["truncated_input"] is True and "truncated" in manifest["input_error"]
    assert 0 < len(cut) < len(rows)
    assert [r["key"] for r in cut] == [k for k in list(rows)[: len(cut)]]

    escaped = {p for p in _files(tmp_path) - outside_before if out not in p.parents}
    assert escaped == set(), f"files written outside the output root: {escaped}"
    check_output(str(out), str(inputs / "*.tar"))
