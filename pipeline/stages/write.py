"""Write one shard's outputs: Parquet (zstd), WebDataset tar, then the manifest (commit marker).

Both data files are written to local temporary files first and published whole (local: rename;
S3: one PUT of a finished file), so no reader ever sees a partial file at a final path. The
manifest is published last; a shard without one is not done.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
import tarfile
import tempfile
import time
from typing import Any

import pyarrow.parquet as pq

import storage
from pipeline.io.layout import OutputLayout
from pipeline.stages.pair_filter import apply_pair_rules
from pipeline.stages.prepare import PreparedShard
from pipeline.stages.reader import iter_samples
from schemas import Manifest, Status, row_to_json_record, rows_to_table, schema_metadata
from schemas.manifest import OutputFile
from schemas.rows import DECODED_STATUSES

DECODED = frozenset(s.value for s in DECODED_STATUSES)


@dataclasses.dataclass(frozen=True)
class ShardCommit:
    """What a run writes into every shard's manifest beside the shard's own counts."""

    output: str
    config_hash: str
    settings: dict[str, Any]
    teacher_id: str
    teacher_revision: str
    run_id: str


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _write_tar(prepared: PreparedShard, path: str) -> int:
    """Re-stream the input tar and copy the original image bytes of every decoded row."""
    by_key = {row["key"]: row for row in prepared.rows}
    written = 0
    with open(path, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for sample in iter_samples(prepared.url):
            row = by_key.get(sample.key)
            if row is None or row["status"] not in DECODED or sample.image is None:
                continue
            name = storage.safe_member_name(sample.key)
            _add(tar, f"{name}.{sample.image_ext}", sample.image)
            _add(tar, f"{name}.txt", row["caption"].encode("utf-8", errors="replace"))
            _add(tar, f"{name}.json", row_to_json_record(row))
            written += 1
    return written


def write_shard(prepared: PreparedShard, commit: ShardCommit, timings: dict[str, float] | None = None) -> Manifest:
    """Publish the shard's Parquet and tar, then its manifest; return the manifest."""
    t0 = time.perf_counter()
    shard, layout = prepared.shard, OutputLayout(commit.output)
    expected = sum(1 for r in prepared.rows if r["status"] in DECODED)
    meta = schema_metadata(commit.teacher_id, commit.config_hash, {"teacher_revision": commit.teacher_revision, "shard": shard})
    apply_pair_rules(prepared.rows, prepared.pair_rules)
    table = rows_to_table(prepared.rows, meta, prepared.groups)
    with tempfile.TemporaryDirectory(prefix=f"shard-{shard}-") as tmp:
        pq_local = os.path.join(tmp, f"{shard}.parquet")
        tar_local = os.path.join(tmp, f"{shard}.tar")
        pq.write_table(table, pq_local, compression="zstd")
        written = _write_tar(prepared, tar_local)
        if written != expected:
            raise RuntimeError(
                f"shard {shard}: the input changed while it was labelled ({written} images re-read, {expected} expected); rerun the shard"
            )
        pq_file = OutputFile(layout.parquet_name(shard), os.path.getsize(pq_local), storage.sha256_file(pq_local))
        tar_file = OutputFile(layout.tar_name(shard), os.path.getsize(tar_local), storage.sha256_file(tar_local))
        storage.publish_file(pq_local, layout.parquet(shard))
        storage.publish_file(tar_local, layout.tar(shard))
    counts: dict[str, int] = {}
    for row in prepared.rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    all_timings = dict(prepared.seconds)
    all_timings.update(timings or {})
    all_timings["write"] = time.perf_counter() - t0
    manifest = Manifest(
        shard=shard,
        input_uri=prepared.url,
        config_hash=commit.config_hash,
        teacher_id=commit.teacher_id,
        teacher_revision=commit.teacher_revision,
        samples=len(prepared.rows),
        status_counts=counts,
        boxes=sum(len(r["boxes"]) for r in prepared.rows),
        parquet=pq_file,
        tar=tar_file,
        tar_samples=written,
        timings={k: round(v, 4) for k, v in all_timings.items()},
        run_id=commit.run_id,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        truncated_input=prepared.report.truncated,
        input_error=prepared.report.error,
        settings=commit.settings,
        teacher_input=prepared.teacher_input,
    )
    storage.publish_bytes(layout.manifest(shard), manifest.to_json())
    return manifest


def apply_detections(prepared: PreparedShard, row_indices: list[int], results: list[Any]) -> None:
    """Fill boxes (or a teacher_error) into the prepared rows."""
    from teacher.resilient import TeacherFailure

    for i, result in zip(row_indices, results):
        row = prepared.rows[i]
        if isinstance(result, TeacherFailure):
            row.update(status=Status.TEACHER_ERROR.value, error=str(result), boxes=[])
        else:
            row["boxes"] = [d.as_row() for d in result]
            if "rescore" in prepared.groups:
                row["image_text_score"] = getattr(result, "image_text_score", None)
