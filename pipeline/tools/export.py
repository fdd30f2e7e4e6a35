"""`glip-export OUTPUT --format {odvg,mdetr,coco,grit} --out PATH`.

Exports the committed shards' labels to the formats trainers read (see
`pipeline.tools.export_formats` for each format's conventions). The boxes go through the same filters as
the training loader (`--min-score`, `--nms-iou`), so an export and a loader with the same settings
see the same labels. Only `ok` rows with at least one box left are exported unless
`--keep-empty`. `--images DIR` also extracts the original image bytes from the output tars to
DIR/SHARD/KEY.EXT, the relative file names the exports refer to. PATH may be local or `s3://`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

import storage
from pipeline.io.committed import (
    NoCommittedShards,
    ShardRef,
    complete_shards,
    iter_tar_members,
    read_table,
    require_committed_shards,
)
from pipeline.tools.export_formats import GRIT_SCHEMA, CocoBuilder, grit_record, image_name, odvg_record
from pipeline.training.targets import LabelFilter, filter_boxes

FORMATS = ("odvg", "mdetr", "coco", "grit")


def exported_rows(refs: list[ShardRef], flt: LabelFilter, keep_empty: bool) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(row, kept boxes) for every exported row, shard by shard (one shard in memory at a time)."""
    for ref in refs:
        for row in read_table([ref]).to_pylist():
            if row["status"] != "ok" or row["width"] is None:
                continue
            boxes = filter_boxes(row, flt)
            if boxes or keep_empty:
                yield row, boxes


def extract_images(refs: list[ShardRef], names: dict[tuple[str, str], str], out: Path) -> int:
    """Copy the original image bytes of the exported rows out of the tars (`names` maps the
    (shard, tar key) of each exported row to its SHARD/KEY.EXT)."""
    written = 0
    for ref in refs:
        for member in iter_tar_members(ref.tar_url):
            name = names.get((ref.shard, member["__key__"]))
            ext = name.rsplit(".", 1)[1] if name else None
            if name is None or ext not in member:
                continue
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(member[ext])
            written += 1
    return written


def export(output: str, fmt: str, out: str, flt: LabelFilter, keep_empty: bool = False, images: Path | None = None) -> dict[str, int]:
    """Write the export; returns counts (images, boxes, and images extracted)."""
    refs = complete_shards(output)
    counts = {"images": 0, "boxes": 0}
    names: dict[tuple[str, str], str] = {}
    rows = exported_rows(refs, flt, keep_empty)
    check_destination(out)
    # Written locally, then published in one step: a failure never leaves a truncated export at `out`.
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        local = os.path.join(tmp, "export")
        with open(local, "wb") as f:
            _write_rows(f, fmt, rows, counts, names)
        storage.publish_file(local, out)
    if images is not None:
        counts["images_extracted"] = extract_images(refs, names, images)
    return counts


def check_destination(out: str) -> None:
    """Refuse an --out whose folder or bucket does not exist, instead of creating it."""
    fs, path = storage.filesystem(out)
    if storage.is_local(fs):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise OSError(f"--out {out}: the folder {folder} does not exist; create it first or fix the path")
        return
    bucket = path.split("/", 1)[0]
    if not storage.with_retries(lambda: fs.exists(bucket), what=f"check bucket {bucket}"):
        raise OSError(f"--out {out}: the bucket {bucket} does not exist or is not reachable; create it first or fix the name")


def _write_rows(f: Any, fmt: str, rows: Iterator, counts: dict[str, int], names: dict[tuple[str, str], str]) -> None:
    def counted() -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """The rows, counting them and noting their image names, whatever the format."""
        for row, boxes in rows:
            counts["images"] += 1
            counts["boxes"] += len(boxes)
            names[(row["shard"], storage.safe_member_name(row["key"]))] = image_name(row)
            yield row, boxes

    if fmt == "odvg":
        for row, boxes in counted():
            f.write(json.dumps(odvg_record(row, boxes), ensure_ascii=False).encode("utf-8") + b"\n")
    elif fmt in ("mdetr", "coco"):
        builder = CocoBuilder(fmt)
        for row, boxes in counted():
            builder.add(row, boxes)
        f.write(json.dumps(builder.document(), ensure_ascii=False).encode("utf-8"))
    elif fmt == "grit":
        with pq.ParquetWriter(f, GRIT_SCHEMA, compression="zstd") as writer:
            batch: list[dict[str, Any]] = []
            for row, boxes in counted():
                batch.append(grit_record(row, boxes))
                if len(batch) >= 4096:
                    writer.write_table(pa.Table.from_pylist(batch, schema=GRIT_SCHEMA))
                    batch = []
            writer.write_table(pa.Table.from_pylist(batch, schema=GRIT_SCHEMA))
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glip-export", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="output root (local or s3://) or pattern")
    parser.add_argument("--format", required=True, choices=FORMATS, help="odvg (JSONL), mdetr or coco (JSON), grit (Parquet)")
    parser.add_argument("--out", required=True, help="file to write (local or s3://)")
    parser.add_argument("--min-score", type=float, default=0.0, help="drop boxes scoring below this (default 0: every stored box)")
    parser.add_argument("--nms-iou", type=float, default=None, help="per-phrase NMS at this IoU")
    parser.add_argument("--keep-empty", action="store_true", help="also export ok rows with no box left")
    parser.add_argument("--images", type=Path, help="extract the exported rows' images under this directory")
    args = parser.parse_args(argv)
    if "://" not in args.out and Path(args.out).is_dir():
        print(f"error: --out {args.out} is a directory; give a file path such as instances.json", file=sys.stderr)
        return 2
    if args.images is not None and args.images.exists() and not args.images.is_dir():
        print(f"error: --images {args.images} is a file; give a directory to extract the images into", file=sys.stderr)
        return 2
    flt = LabelFilter(min_score=args.min_score, nms_iou=args.nms_iou, min_boxes=0)
    try:
        require_committed_shards(args.output)
        counts = export(args.output, args.format, args.out, flt, args.keep_empty, args.images)
    except (NoCommittedShards, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {counts.get('images', 0)} image(s) and {counts.get('boxes', 0)} box(es) as {args.format} to {args.out}",
          file=sys.stderr)
    print(json.dumps({"format": args.format, "out": args.out, **counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
