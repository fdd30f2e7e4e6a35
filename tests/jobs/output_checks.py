"""Assertions every finished output must pass, written as a user would check them: DuckDB over
the Parquet, tarfile over the shards, the manifests' counts and checksums."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import duckdb
import fsspec

from pipeline.stages.inputs import list_shards, shard_id
from pipeline.stages.reader import iter_samples
from schemas import Status
from schemas.rows import DECODED_STATUSES
from storage import safe_member_name


def _read_all(url: str) -> bytes:
    with fsspec.open(url, "rb") as fh:
        return fh.read()


def check_output(output: str, input_pattern: str, local_parquet_glob: str | None = None) -> dict:
    """Check the output contract for every input shard; return totals for further asserts."""
    totals = {"rows": 0, "boxes": 0, "ok": 0}
    con = duckdb.connect()
    for url in list_shards(input_pattern):
        sid = shard_id(url)
        manifest = json.loads(_read_all(f"{output}/_manifests/{sid}.json"))
        pq_bytes = _read_all(f"{output}/parquet/{sid}.parquet")
        tar_bytes = _read_all(f"{output}/wds/{sid}.tar")
        assert manifest["parquet"]["sha256"] == hashlib.sha256(pq_bytes).hexdigest()
        assert manifest["tar"]["sha256"] == hashlib.sha256(tar_bytes).hexdigest()
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(pq_bytes))
        con.register("t", table)
        inputs = list(iter_samples(url))
        keys = [r[0] for r in con.execute("select key from t order by key").fetchall()]
        assert keys == sorted(s.key for s in inputs), f"{sid}: parquet keys differ from the input's"
        assert con.execute("select count(distinct key) = count(*) from t").fetchone()[0]
        bad_status = con.execute(
            "select count(*) from t where status not in (select unnest($1::varchar[]))", [Status.values()]
        ).fetchone()[0]
        assert bad_status == 0
        assert con.execute("select count(*) from t where (status = 'ok') = (error is not null)").fetchone()[0] == 0
        bad_spans = con.execute(
            "select count(*) from (select caption, unnest(phrases) p from t) "
            "where substring(caption, p.start + 1, p.\"end\" - p.start) != p.text"
        ).fetchone()[0]
        assert bad_spans == 0, f"{sid}: {bad_spans} phrase spans do not index the caption"
        bad_boxes = con.execute(
            "select count(*) from (select width, height, len(phrases) np, unnest(boxes) b from t) where "
            "b.x0 < 0 or b.y0 < 0 or b.x1 > width or b.y1 > height or b.x0 > b.x1 or b.y0 > b.y1 "
            "or b.score < 0 or b.score > 1 or b.phrase < 0 or b.phrase >= np"
        ).fetchone()[0]
        assert bad_boxes == 0, f"{sid}: {bad_boxes} boxes outside the frame or with bad scores"
        counts = dict(con.execute("select status, count(*) from t group by status").fetchall())
        assert manifest["status_counts"] == counts
        assert manifest["samples"] == table.num_rows == len(inputs)
        n_boxes = con.execute("select coalesce(sum(len(boxes)), 0) from t").fetchone()[0]
        assert manifest["boxes"] == n_boxes
        decoded = {s.value for s in DECODED_STATUSES}
        expected = {r[0]: r[1] for r in con.execute("select key, image_ext from t where status in (select unnest($1::varchar[]))", [sorted(decoded)]).fetchall()}
        by_key = {s.key: s for s in inputs}
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        assert manifest["tar_samples"] == len(expected)
        assert len(members) == 3 * len(expected)
        for key, ext in expected.items():
            name = safe_member_name(key)
            assert members[f"{name}.{ext}"] == by_key[key].image, f"{sid}/{key}: image bytes differ from the input"
            record = json.loads(members[f"{name}.json"])
            assert record["key"] == key and members[f"{name}.txt"].decode() == record["caption"]
        totals["rows"] += table.num_rows
        totals["boxes"] += n_boxes
        totals["ok"] += counts.get("ok", 0)
        con.unregister("t")
    return totals
