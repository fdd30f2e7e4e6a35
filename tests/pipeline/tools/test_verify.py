"""pipeline.tools.verify on hand-built outputs: a valid one passes, each broken invariant is named."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq
import pytest

import storage
from pipeline.tools.verify import main, verify_output
from pipeline.tools.verify_checks import read_input
from schemas import Manifest, row_to_json_record, rows_to_table, schema_metadata
from schemas.manifest import OutputFile
from schemas.rows import DECODED_STATUSES, empty_row

SHARD = "00007"
CONFIG = "cfg123"


def _row(key: str, status: str = "ok", **kw: Any) -> dict[str, Any]:
    row = empty_row(key, SHARD)
    row.update(url=f"http://x/{key}", caption="a dog and a red ball", width=64, height=48,
               status=status, error=None if status == "ok" else f"{status} detail", image_ext="jpg",
               phrases=[{"text": "a dog", "start": 0, "end": 5}, {"text": "a red ball", "start": 10, "end": 20}],
               boxes=[{"phrase": 0, "x0": 1.0, "y0": 2.0, "x1": 30.5, "y1": 40.0, "score": 0.75},
                      {"phrase": 1, "x0": 0.0, "y0": 0.0, "x1": 64.0, "y1": 48.0, "score": 0.3}]
               if status == "ok" else [])
    row.update(kw)
    return row


def _rows() -> list[dict[str, Any]]:
    return [_row("k0"), _row("k1"), _row("odd.key/../x"), _row("k3", "decode_error", width=None, height=None),
            _row("k4", "no_phrases", phrases=[])]


def _image(key: str) -> bytes:
    return b"\xff\xd8 fake jpeg for " + key.encode()


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _out_members(rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    out = []
    for r in rows:
        if r["status"] in {s.value for s in DECODED_STATUSES}:
            name = storage.safe_member_name(r["key"])
            out += [(f"{name}.jpg", _image(r["key"])), (f"{name}.txt", r["caption"].encode()),
                    (f"{name}.json", row_to_json_record(r))]
    return out


def write_output(root: str, rows: list[dict[str, Any]], *, members: list[tuple[str, bytes]] | None = None,
                 manifest_edit: Callable[[Manifest], None] | None = None, shard: str = SHARD,
                 config: str = CONFIG) -> None:
    """A shard as the contract says: Parquet, tar, then the manifest with counts and checksums."""
    table = rows_to_table(rows, schema_metadata("tiny-teacher", config))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    pq_bytes = buf.getvalue()
    tar_bytes = _tar_bytes(_out_members(rows) if members is None else members)
    storage.publish_bytes(storage.join(root, "parquet", f"{shard}.parquet"), pq_bytes)
    storage.publish_bytes(storage.join(root, "wds", f"{shard}.tar"), tar_bytes)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    decoded = sum(r["status"] in {s.value for s in DECODED_STATUSES} for r in rows)
    m = Manifest(shard=shard, input_uri=f"in/{shard}.tar", config_hash=config, teacher_id="tiny-teacher",
                 teacher_revision="r0", samples=len(rows), status_counts=statuses,
                 boxes=sum(len(r["boxes"]) for r in rows),
                 parquet=OutputFile(f"parquet/{shard}.parquet", len(pq_bytes), hashlib.sha256(pq_bytes).hexdigest()),
                 tar=OutputFile(f"wds/{shard}.tar", len(tar_bytes), hashlib.sha256(tar_bytes).hexdigest()),
                 tar_samples=decoded, timings={}, run_id="run1", created_at="2026-11-28T00:00:00Z")
    if manifest_edit:
        manifest_edit(m)
    storage.publish_bytes(storage.join(root, "_manifests", f"{shard}.json"), m.to_json())


def write_input(path: Path, rows: list[dict[str, Any]], *, image_for: Callable[[str], bytes] = _image,
                repeat: tuple[str, ...] = (), cut: int | None = None) -> str:
    """An img2dataset-style input tar holding the samples behind `rows` (keys as member names);
    keys in `repeat` occur once more at the end (other image bytes); `cut` truncates the tar."""
    members = []
    for r in rows:
        members += [(f"{r['key']}.jpg", image_for(r["key"])), (f"{r['key']}.txt", r["caption"].encode()),
                    (f"{r['key']}.json", json.dumps({"key": r["key"]}).encode())]
    members += [m for k in repeat for m in ((f"{k}.jpg", b"second copy"), (f"{k}.txt", b"again"))]
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{SHARD}.tar").write_bytes(_tar_bytes(members)[:cut])
    return str(path / "{00007..00007}.tar")


def _fails_with(root: str, fragment: str, input_pattern: str | None = None) -> None:
    report = verify_output(root, input_pattern)
    assert not report.ok
    text = "\n".join(report.lines())
    assert fragment in text, text


def test_valid_output_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_output(str(tmp_path), _rows())
    report = verify_output(str(tmp_path))
    assert report.ok, report.lines()
    assert report.shards[0].samples == 5 and report.shards[0].boxes == 6
    assert main([str(tmp_path)]) == 0
    assert f"{SHARD}: OK" in capsys.readouterr().out
    assert main([str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_valid_output_passes_against_its_input(tmp_path: Path) -> None:
    rows = _rows()
    write_output(str(tmp_path / "out"), rows)
    report = verify_output(str(tmp_path / "out"), write_input(tmp_path / "in", rows))
    assert report.ok, report.lines()


@pytest.mark.parametrize("rows, fragment", [
    ([_row("k0"), _row("k0")], "duplicate key: 'k0'"),
    ([_row("k0", phrases=[{"text": "a cat", "start": 0, "end": 5}])], "phrase span does not match"),
    ([_row("k0", phrases=[{"text": "a dog", "start": 0, "end": 99}])], "phrase span does not match"),
    ([_row("k0", boxes=[{"phrase": 0, "x0": 1.0, "y0": 2.0, "x1": 65.0, "y1": 4.0, "score": 0.5}])],
     "box outside the width x height frame: 'k0'"),
    ([_row("k0", boxes=[{"phrase": 0, "x0": 5.0, "y0": 2.0, "x1": 4.0, "y1": 4.0, "score": 0.5}])],
     "box outside the width x height frame"),
    ([_row("k0", boxes=[{"phrase": 0, "x0": 1.0, "y0": 2.0, "x1": 3.0, "y1": 4.0, "score": 1.5}])],
     "score outside [0, 1]: 'k0'"),
    ([_row("k0", boxes=[{"phrase": 7, "x0": 1.0, "y0": 2.0, "x1": 3.0, "y1": 4.0, "score": 0.5}])],
     "box phrase index out of range"),
    ([_row("k0", error="should be null")], "error must be set exactly when status is not ok"),
    ([_row("k0", "decode_error", error=None, boxes=[])], "error must be set exactly when status is not ok"),
    ([_row("k0", shard="00008")], "shard column is not '00007'"),
])
def test_row_invariants(tmp_path: Path, rows: list[dict[str, Any]], fragment: str) -> None:
    write_output(str(tmp_path), rows)
    _fails_with(str(tmp_path), fragment)


def test_missing_tar_member(tmp_path: Path) -> None:
    rows = _rows()
    members = [m for m in _out_members(rows) if m[0] != "k1.txt"]
    write_output(str(tmp_path), rows, members=members)
    _fails_with(str(tmp_path), "tar: missing member: 'k1.txt'")


def test_undecoded_row_in_tar(tmp_path: Path) -> None:
    rows = _rows()
    members = _out_members(rows) + [("k3.jpg", _image("k3"))]
    write_output(str(tmp_path), rows, members=members)
    _fails_with(str(tmp_path), "tar: member without a decoded row: 'k3.jpg'")


def test_json_record_differs_from_row(tmp_path: Path) -> None:
    rows = _rows()
    members = [(n, row_to_json_record(_row("k0", caption="changed")) if n == "k0.json" else d)
               for n, d in _out_members(rows)]
    write_output(str(tmp_path), rows, members=members)
    _fails_with(str(tmp_path), "json record differs from the parquet row: 'k0'")


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: setattr(m.parquet, "sha256", "0" * 64), "parquet size/sha256 do not match"),
    (lambda m: setattr(m.tar, "size", m.tar.size + 1), "tar size/sha256 do not match"),
    (lambda m: setattr(m, "samples", 4), "samples 4 != 5 parquet rows"),
    (lambda m: setattr(m, "boxes", 1), "boxes 1 != 6"),
    (lambda m: m.status_counts.update(ok=2), "status_counts"),
    (lambda m: setattr(m, "tar_samples", 3), "tar_samples 3"),
    (lambda m: setattr(m, "config_hash", "other"), "config_hash"),
])
def test_manifest_mismatch(tmp_path: Path, edit: Callable[[Manifest], None], fragment: str) -> None:
    write_output(str(tmp_path), _rows(), manifest_edit=edit)
    _fails_with(str(tmp_path), fragment)


def test_stray_temp_file(tmp_path: Path) -> None:
    write_output(str(tmp_path), _rows())
    (tmp_path / "wds" / f"{storage.TEMP_PREFIX}{SHARD}.tar.abc").write_bytes(b"partial")
    _fails_with(str(tmp_path), "stray temp file at a final path")


def test_missing_parquet_and_empty_output(tmp_path: Path) -> None:
    _fails_with(str(tmp_path), "no manifests under")
    write_output(str(tmp_path), _rows())
    os.remove(tmp_path / "parquet" / f"{SHARD}.parquet")
    _fails_with(str(tmp_path), "parquet/00007.parquet missing")


def test_input_keys_and_image_bytes(tmp_path: Path) -> None:
    rows = _rows()
    write_output(str(tmp_path / "out"), rows[:-1])
    _fails_with(str(tmp_path / "out"), "keys missing from parquet: 'k4'", write_input(tmp_path / "in", rows))
    write_output(str(tmp_path / "out2"), rows)
    pattern = write_input(tmp_path / "in2", rows, image_for=lambda k: b"other" if k == "k1" else _image(k))
    _fails_with(str(tmp_path / "out2"), "image bytes differ from the input: 'k1'", pattern)


def test_unfinished_input_shard(tmp_path: Path) -> None:
    rows = _rows()
    write_output(str(tmp_path / "out"), rows)
    pattern = write_input(tmp_path / "in", rows)
    (tmp_path / "in" / "00008.tar").write_bytes((tmp_path / "in" / f"{SHARD}.tar").read_bytes())
    report = verify_output(str(tmp_path / "out"), pattern.replace("{00007..00007}", "{00007..00008}"))
    assert not report.ok and report.unfinished == {"00008": "no manifest"}
    assert "00008: UNFINISHED: no manifest" in report.lines()
    assert main([str(tmp_path / "out"), "--input", str(tmp_path / "in" / "*.tar")]) == 1


def test_s3_output(s3_env: Any, tmp_path: Path) -> None:
    root = s3_env.url("labels")
    rows = _rows()
    write_output(root, rows)
    report = verify_output(root, write_input(tmp_path / "in", rows))
    assert report.ok, report.lines()
    write_output(root, rows, manifest_edit=lambda m: setattr(m, "boxes", 0))
    _fails_with(root, "boxes 0 != 6")


def test_repeated_input_key_needs_one_duplicate_key_row(tmp_path: Path) -> None:
    rows = _rows()
    pattern = write_input(tmp_path / "in", rows, repeat=("k0",))
    write_output(str(tmp_path / "out"), rows + [_row("k0 (2)", "duplicate_key", boxes=[])])
    report = verify_output(str(tmp_path / "out"), pattern)
    assert report.ok, report.lines()
    write_output(str(tmp_path / "out2"), rows)
    _fails_with(str(tmp_path / "out2"), "1 repeated sample(s) in the input but 0 duplicate_key row(s)", pattern)


def test_truncated_input_must_be_declared(tmp_path: Path) -> None:
    rows = _rows()
    full = write_input(tmp_path / "full", rows)
    size = (tmp_path / "full" / f"{SHARD}.tar").stat().st_size
    pattern = write_input(tmp_path / "in", rows, cut=size // 2 + 100)
    read = read_input(pattern.replace("{00007..00007}", SHARD))
    assert read.error is not None and 0 < len(read.occurrences) < len(rows)
    kept = [r for r in rows if r["key"] in read.occurrences]
    write_output(str(tmp_path / "out"), kept)
    _fails_with(str(tmp_path / "out"), "does not say truncated_input", pattern)
    write_output(str(tmp_path / "out"), kept, manifest_edit=lambda m: setattr(m, "truncated_input", True))
    report = verify_output(str(tmp_path / "out"), pattern)
    assert report.ok, report.lines()
    assert verify_output(str(tmp_path / "out"), full).ok is False


def test_bad_input_pattern_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_output(str(tmp_path), _rows())
    assert main([str(tmp_path), "--input", str(tmp_path / "nowhere" / "*.tar")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_shards_of_two_configs_in_one_output(tmp_path: Path) -> None:
    write_output(str(tmp_path), _rows())
    write_output(str(tmp_path), [{**r, "shard": "00008"} for r in _rows()], shard="00008", config="other")
    report = verify_output(str(tmp_path))
    assert all(s.ok for s in report.shards)
    _fails_with(str(tmp_path), "shards made with different configs")


def test_the_columns_settings_add_are_checked_too() -> None:
    from pipeline.tools.verify_checks import check_rows

    caption = "a dog in a field of flowers"
    row = {"key": "k", "shard": "s", "caption": caption, "status": "ok", "error": None, "width": 10, "height": 10,
           "phrases": [{"text": "a dog", "start": 0, "end": 5}],
           "boxes": [{"phrase": 0, "x0": 0.0, "y0": 0.0, "x1": 5.0, "y1": 5.0, "score": 0.64, "clip_score": 0.25,
                      "rescored": 0.4}],
           "ref_exps": [{"text": caption, "start": 0, "end": 27, "phrase": 0}],
           "dropped_phrases": [{"text": "flowers", "start": 20, "end": 27, "reason": "abstract_noun"}]}
    assert check_rows([row], "s") == []
    bad = dict(row, ref_exps=[{"text": "a dog in", "start": 0, "end": 9, "phrase": 0}])
    assert any("ref_exps or dropped_phrases span" in v for v in check_rows([bad], "s"))
    outside = dict(row, ref_exps=[{"text": "a field of flowers", "start": 9, "end": 27, "phrase": 0}])
    assert any("does not contain its head phrase" in v for v in check_rows([outside], "s"))
    nested = dict(row, ref_exps=row["ref_exps"] + [{"text": "a dog", "start": 0, "end": 5, "phrase": 0}])
    assert any("overlap or nest" in v for v in check_rows([nested], "s"))
    wrong = dict(row, boxes=[dict(row["boxes"][0], rescored=0.5)])
    assert any("sqrt(score * clip_score)" in v for v in check_rows([wrong], "s"))
