"""Build realistic labelling-job output directories for the reader tests.

The layout and every record go through `schemas` (rows_to_table, row_to_json_record, Manifest),
so the fixtures change with the contract. Images are real bytes in the format the row's
`image_ext` names (JPEG or PNG unless a test picks another), with a coloured patch where each
box is, which lets the gallery screenshot test look for box colours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import os
import random
import tarfile
import uuid
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from schemas import Manifest, RunRecord, Status, row_to_json_record, rows_to_table, schema_metadata
from schemas.manifest import OutputFile
from storage import safe_member_name

HOSTILE_CAPTION = 'a dog & a "cat" <script>alert(1)</script> on the grass\'s edge'

# (caption, phrase texts); spans are found in the caption so `caption[start:end] == text` holds.
CAPTIONS: list[tuple[str, list[str]]] = [
    ("a brown dog catching a red frisbee on the grass", ["a brown dog", "a red frisbee", "the grass"]),
    ("two people riding bikes near the beach", ["two people", "bikes", "the beach"]),
    ("a small cat sleeping on a wooden chair", ["a small cat", "a wooden chair"]),
    (HOSTILE_CAPTION, ["a dog", '"cat"', "the grass's edge"]),
    ("a white boat on the blue sea under clouds", ["a white boat", "the blue sea", "clouds"]),
    ("a man wearing a hat and a woman holding a cup", ["a man", "a hat", "a woman", "a cup"]),
    ("red flowers in a green field", ["red flowers", "a green field"]),
    ("a bus on the street in front of a building", ["a bus", "the street", "front", "a building"]),
]

NEVER_GROUNDED = "front"  # a phrase the fixture never gives a box: inspect must list it


@dataclasses.dataclass
class FixtureShard:
    shard: str
    rows: list[dict[str, Any]]
    committed: bool


def _spans(caption: str, texts: list[str]) -> list[dict[str, Any]]:
    phrases, cursor = [], 0
    for text in texts:
        start = caption.index(text, cursor)
        phrases.append({"text": text, "start": start, "end": start + len(text)})
        cursor = start + len(text)
    return phrases


def _random_box(rng: random.Random, width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0 = rng.uniform(0, width * 0.6), rng.uniform(0, height * 0.6)
    x1 = min(float(width), x0 + rng.uniform(width * 0.2, width * 0.5))
    y1 = min(float(height), y0 + rng.uniform(height * 0.2, height * 0.5))
    return x0, y0, x1, y1


SMALL_SIZES = [(160, 120), (120, 160), (200, 150), (96, 96)]


def make_row(
    shard: str, index: int, rng: random.Random, status: str = "ok", sizes: list[tuple[int, int]] = SMALL_SIZES
) -> dict[str, Any]:
    """One Parquet row: several phrases with exact spans, pixel boxes inside the frame."""
    caption, texts = CAPTIONS[index % len(CAPTIONS)]
    width, height = rng.choice(sizes)
    row: dict[str, Any] = {
        "key": f"{shard}_{index:05d}",
        "shard": shard,
        "url": f"https://example.com/img/{shard}/{index}.jpg?a=1&b=<2>",
        "caption": caption,
        "width": width,
        "height": height,
        "status": status,
        "error": None,
        "phrases": _spans(caption, texts),
        "boxes": [],
        "original_width": width * 2,
        "original_height": height * 2,
        "image_ext": "png" if index % 3 == 2 else "jpg",
        "exif_orientation": 1,
    }
    if status == Status.OK.value:
        for p, text in enumerate(texts):
            if text == NEVER_GROUNDED:
                continue
            for _ in range(rng.choice([0, 1, 1, 2])):
                box = _random_box(rng, width, height)
                row["boxes"].append(_box(p, box, rng.uniform(0.05, 0.99)))
                if rng.random() < 0.3:  # a near duplicate, for the NMS filter to remove
                    jittered = (box[0] + 1, box[1] + 1, min(width, box[2] + 1), min(height, box[3] + 1))
                    row["boxes"].append(_box(p, jittered, rng.uniform(0.05, 0.99)))
    elif status == Status.NO_PHRASES.value:
        row["phrases"] = []
    elif status == Status.DECODE_ERROR.value:
        row.update(width=None, height=None, error="cannot identify image file", image_ext="jpg")
    elif status == Status.TEACHER_ERROR.value:
        row["error"] = "RuntimeError: CUDA out of memory"
    return row


def _box(phrase: int, box: tuple[float, float, float, float], score: float) -> dict[str, Any]:
    x0, y0, x1, y1 = box
    return {"phrase": phrase, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "score": round(score, 4)}


BOX_COLOURS = [(230, 40, 40), (40, 160, 60), (40, 80, 220), (220, 180, 30)]


def image_bytes(row: dict[str, Any]) -> bytes:
    """A real image of the row's size with a filled patch per box (grey background)."""
    img = Image.new("RGB", (row["width"], row["height"]), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    for i, box in enumerate(row["boxes"]):
        draw.rectangle([box["x0"], box["y0"], box["x1"] - 1, box["y1"] - 1], outline=BOX_COLOURS[i % 4], width=2)
    buf = io.BytesIO()
    img.save(buf, format=Image.registered_extensions()[f".{row['image_ext']}"], quality=90)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _output_file(root: Path, rel: str) -> OutputFile:
    data = (root / rel).read_bytes()
    return OutputFile(path=rel, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def write_shard(root: Path, shard: str, rows: list[dict[str, Any]], commit: bool = True,
                groups: frozenset[str] = frozenset()) -> None:
    """Parquet + tar (+ manifest when `commit`), as the labelling job publishes them; `groups`
    are the column groups the rows carry (`schemas.rows.COLUMN_GROUPS`)."""
    for sub in ("parquet", "wds", "_manifests"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    table = rows_to_table(rows, schema_metadata("tiny-test-teacher", "cfg123"), groups)
    pq.write_table(table, root / "parquet" / f"{shard}.parquet", compression="zstd")
    with tarfile.open(root / "wds" / f"{shard}.tar", "w") as tar:
        for row in rows:
            if row["width"] is None:
                continue
            name = safe_member_name(row["key"])  # as the job's writer names members
            _add(tar, f"{name}.{row['image_ext']}", image_bytes(row))
            _add(tar, f"{name}.txt", row["caption"].encode("utf-8"))
            _add(tar, f"{name}.json", row_to_json_record(row))
    if not commit:
        return
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    manifest = Manifest(
        shard=shard,
        input_uri=f"s3://input/{shard}.tar",
        config_hash="cfg123",
        teacher_id="tiny-test-teacher",
        teacher_revision="0",
        samples=len(rows),
        status_counts=counts,
        boxes=sum(len(r["boxes"]) for r in rows),
        parquet=_output_file(root, f"parquet/{shard}.parquet"),
        tar=_output_file(root, f"wds/{shard}.tar"),
        tar_samples=sum(r["width"] is not None for r in rows),
        timings={"total_s": 1.0},
        run_id="run-test",
        created_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).isoformat(),
    )
    (root / "_manifests" / f"{shard}.json").write_bytes(manifest.to_json())


STATUS_CYCLE = ["ok", "ok", "ok", "ok", "ok", "no_phrases", "ok", "ok", "decode_error", "teacher_error"]


def build_output(
    root: Path, shards: int = 3, samples: int = 10, seed: int = 0, uncommitted: int = 1,
    sizes: list[tuple[int, int]] = SMALL_SIZES,
) -> list[FixtureShard]:
    """`shards` committed shards plus `uncommitted` ones without a manifest (a job still writing)."""
    rng = random.Random(seed)
    built = []
    for s in range(shards + uncommitted):
        name = f"{s:05d}"
        rows = [make_row(name, i, rng, STATUS_CYCLE[i % len(STATUS_CYCLE)], sizes) for i in range(samples)]
        committed = s < shards
        write_shard(root, name, rows, commit=committed)
        built.append(FixtureShard(shard=name, rows=rows, committed=committed))
    run = RunRecord(
        run_id="run-test", config={"box_threshold": 0.05}, config_hash="cfg123", versions={},
        started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:01:00+00:00",
        shards_total=shards + uncommitted, shards_done=shards, shards_skipped=0, shards_failed={},
        status_counts={}, boxes=0, samples=shards * samples, seconds=60.0,
    )
    (root / "_runs").mkdir(exist_ok=True)
    (root / "_runs" / "run-test.json").write_bytes(run.to_json())
    return built


def committed_rows(built: list[FixtureShard]) -> list[dict[str, Any]]:
    return [row for shard in built if shard.committed for row in shard.rows]


def write_vocab(path: Path) -> Path:
    """A WordPiece vocab laid out like bert-base-uncased's ids for the specials Grounding DINO hard-codes.

    Grounding DINO's modelling code treats ids 101, 102, 1012 and 1029 as [CLS], [SEP], "." and "?"
    (and 0 as [PAD]); a tiny vocab must keep those ids for the model's text masks and label maps.
    """
    import string

    size = 1100
    vocab = [f"[unused{i}]" for i in range(size)]
    fixed = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
    words = sorted({w.lower() for caption, _ in CAPTIONS for w in caption.split() if w.isalpha()})
    chars = list(string.ascii_lowercase + string.digits + string.punctuation.replace(".", "").replace("?", ""))
    fill = [w for w in words if w not in fixed.values()] + chars + ["##" + c for c in string.ascii_lowercase]
    slots = [i for i in range(104, size) if i not in fixed]
    seen: set[str] = set()
    for slot, token in zip(slots, [t for t in fill if not (t in seen or seen.add(t))]):
        vocab[slot] = token
    for i, token in fixed.items():
        vocab[i] = token
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return path


def tokenizer(tmp: Path) -> Any:
    from transformers import BertTokenizerFast

    path = write_vocab(tmp / "vocab.txt")
    vocab = {token: i for i, token in enumerate(path.read_text(encoding="utf-8").splitlines())}
    return BertTokenizerFast(vocab=vocab, do_lower_case=True)


def read_json_member(data: bytes) -> dict[str, Any]:
    return json.loads(data.decode("utf-8"))


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with one fresh bucket; yields `s3://BUCKET`.

    moto keeps its state per process, so each use gets its own bucket name.

    Endpoint and dummy credentials go through the standard AWS environment variables, which
    s3fs (and so fsspec) honours, exactly as a user would point the tools at MinIO.
    """
    import fsspec
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    bucket = f"labels-{uuid.uuid4().hex[:12]}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    _, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    S3FileSystem.clear_instance_cache()  # cached clients would still point at an older server
    try:
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir(bucket)
        yield f"s3://{bucket}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        S3FileSystem.clear_instance_cache()
        server.stop()


def upload(local_root: Path, url: str) -> None:
    """Copy a local output directory to `url` (s3://...), file by file."""
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            fs.pipe(f"{url.rstrip('/')}/{path.relative_to(local_root).as_posix()}", path.read_bytes())
