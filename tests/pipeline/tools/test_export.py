"""`python -m pipeline.tools.export`: each format read back with that format's own conventions."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.tools.export import main
from pipeline.training.targets import LabelFilter, filter_boxes
from tests.pipeline.output_fixture import build_output, committed_rows, make_row, moto_s3, upload, write_shard

MIN_SCORE = 0.3


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("out")
    rows = committed_rows(build_output(root, shards=2, samples=20, seed=9))
    return root, {r["key"]: r for r in rows}


def expected(rows: dict[str, dict]) -> dict[str, list[dict]]:
    """Key -> kept boxes, for the rows an export must contain."""
    flt = LabelFilter(min_score=MIN_SCORE, min_boxes=0)
    kept = {k: filter_boxes(r, flt) for k, r in rows.items() if r["status"] == "ok"}
    return {k: v for k, v in kept.items() if v}


def run(root: Path, fmt: str, out: Path, *extra: str) -> None:
    assert main([str(root), "--format", fmt, "--out", str(out), "--min-score", str(MIN_SCORE), *extra]) == 0


def as_xyxy(box: dict) -> list[float]:
    return [box["x0"], box["y0"], box["x1"], box["y1"]]


def test_odvg_reads_back_like_open_grounding_dino_and_mmdet(output, tmp_path: Path) -> None:
    root, rows = output
    run(root, "odvg", tmp_path / "train.jsonl", "--images", str(tmp_path / "images"))
    want = expected(rows)
    metas = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(metas) == len(want)
    for meta in metas:
        image = Image.open(tmp_path / "images" / meta["filename"])  # ODVG: root + relative filename
        assert image.size == (meta["width"], meta["height"])
        key = Path(meta["filename"]).stem
        grounding = meta["grounding"]
        assert grounding["caption"] == rows[key]["caption"]
        boxes = [v for r in grounding["regions"] for v in r["bbox"]]
        assert boxes == pytest.approx([v for b in want[key] for v in as_xyxy(b)], abs=2e-3)
        for region in grounding["regions"]:
            x0, y0, x1, y1 = region["bbox"]
            assert 0 <= x0 < x1 <= meta["width"] and 0 <= y0 < y1 <= meta["height"]
            (start, end), = region["tokens_positive"]
            assert grounding["caption"][start:end] == region["phrase"]


@pytest.mark.parametrize("fmt", ["mdetr", "coco"])
def test_coco_family_reads_back(output, tmp_path: Path, fmt: str) -> None:
    root, rows = output
    run(root, fmt, tmp_path / "ann.json")
    doc = json.loads((tmp_path / "ann.json").read_text(encoding="utf-8"))
    want = expected(rows)
    images = {img["id"]: img for img in doc["images"]}
    categories = {c["id"]: c["name"] for c in doc["categories"]}
    assert len(images) == len(want) and len(doc["annotations"]) == sum(map(len, want.values()))
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    by_image: dict[int, list[dict]] = {}
    for ann in doc["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image_id, anns in by_image.items():
        image = images[image_id]
        row = rows[image["original_key"]]
        for ann, box in zip(anns, want[row["key"]]):
            x, y, w, h = ann["bbox"]  # COCO: top-left corner, width, height
            assert [x, y, x + w, y + h] == pytest.approx(as_xyxy(box), abs=2e-3)
            assert ann["area"] == pytest.approx(w * h, rel=1e-3)
            phrase = row["phrases"][box["phrase"]]["text"]
            if fmt == "mdetr":
                (start, end), = ann["tokens_positive"]
                assert image["caption"][start:end] == phrase  # MDETR: spans into the image's caption
                assert categories[ann["category_id"]] == "object"
            else:
                assert categories[ann["category_id"]] == phrase.lower()
    if fmt == "coco":
        names = {r["phrases"][b["phrase"]]["text"].lower() for k, bs in want.items() for r in [rows[k]] for b in bs}
        assert set(categories.values()) == names and len(categories) == len(names)


def test_grit_reads_back(output, tmp_path: Path) -> None:
    root, rows = output
    run(root, "grit", tmp_path / "grit.parquet")
    table = pq.read_table(tmp_path / "grit.parquet").to_pylist()
    want = expected(rows)
    assert {r["key"] for r in table} == set(want)
    for record in table:
        for chunk, box in zip(record["noun_chunks"], want[record["key"]]):
            start, end, x0, y0, x1, y1, score = chunk
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
            assert record["caption"][int(start):int(end)] == rows[record["key"]]["phrases"][box["phrase"]]["text"]
            assert [x0 * record["width"], y0 * record["height"], x1 * record["width"], y1 * record["height"]] == \
                pytest.approx(as_xyxy(box), abs=1e-3)
            assert score == pytest.approx(box["score"], abs=1e-6) and score >= MIN_SCORE


def test_keep_empty_and_nms(output, tmp_path: Path) -> None:
    root, rows = output
    run(root, "odvg", tmp_path / "all.jsonl", "--keep-empty", "--nms-iou", "0.5")
    metas = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert len(metas) == sum(r["status"] == "ok" for r in rows.values())
    flt = LabelFilter(min_score=MIN_SCORE, nms_iou=0.5, min_boxes=0)
    assert sum(len(m["grounding"]["regions"]) for m in metas) == sum(len(filter_boxes(r, flt)) for r in rows.values() if r["status"] == "ok")


def test_s3_in_and_out(output, tmp_path: Path) -> None:
    root, rows = output
    run(root, "coco", tmp_path / "local.json")
    with moto_s3() as bucket:
        upload(root, f"{bucket}/out")
        assert main([f"{bucket}/out", "--format", "coco", "--out", f"{bucket}/exports/coco.json", "--min-score", str(MIN_SCORE)]) == 0
        import fsspec

        with fsspec.open(f"{bucket}/exports/coco.json", "rb") as f:
            remote = json.load(f)
        assert main([f"{bucket}/out", "--format", "coco", "--out", "s3://no-such-bucket-here/coco.json"]) == 2
        assert not fsspec.filesystem("s3").exists("no-such-bucket-here"), "a missing bucket is refused, not created"
    assert remote == json.loads((tmp_path / "local.json").read_text())


def test_a_missing_destination_folder_is_refused_and_a_failed_export_leaves_nothing(output, tmp_path: Path, capsys, monkeypatch) -> None:
    root, _ = output
    assert main([str(root), "--format", "coco", "--out", str(tmp_path / "nowhere" / "coco.json")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()

    import pipeline.tools.export as export

    def fails_midway(f, *args):
        f.write(b'{"images": [')
        raise OSError("disk full")

    monkeypatch.setattr(export, "_write_rows", fails_midway)
    assert main([str(root), "--format", "coco", "--out", str(tmp_path / "coco.json")]) == 2
    assert not (tmp_path / "coco.json").exists(), "no truncated export at the final path"


def test_images_of_rows_with_hostile_keys_are_extracted_where_the_exports_name_them(tmp_path: Path) -> None:
    import random as _random

    from tests.pipeline.output_fixture import make_row, write_shard

    rng = _random.Random(4)
    rows = [make_row("00000", i, rng) for i in range(6)]
    for row, key in zip(rows, ["a/../../evil", "/tmp/absolute", "v2.final", "with space", "ünï", "plain"]):
        row["key"] = key
    write_shard(tmp_path / "out", "00000", rows)
    images = tmp_path / "images"
    assert main([str(tmp_path / "out"), "--format", "odvg", "--out", str(tmp_path / "x.jsonl"), "--images", str(images)]) == 0
    metas = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(metas) == sum(1 for r in rows if r["boxes"])
    for meta in metas:
        path = (images / meta["filename"]).resolve()
        assert path.is_relative_to(images.resolve()) and path.is_file(), meta["filename"]
        assert Image.open(path).size == (meta["width"], meta["height"])
    assert sorted(p.name for p in images.rglob("*") if p.is_file()) == sorted(Path(m["filename"]).name for m in metas)


def test_grit_and_odvg_carry_referring_expressions(tmp_path: Path) -> None:
    """GRIT's layout: a referring expression takes its head phrase's boxes, [start, end, box, score]."""
    caption = "a dog in a field of flowers next to a red car"
    row = make_row("s", 0, random.Random(0))
    row.update(key="k0", caption=caption, width=200, height=100, status="ok", error=None,
               phrases=[{"text": t, "start": caption.index(t), "end": caption.index(t) + len(t)}
                        for t in ("a dog", "a field", "flowers", "a red car")],
               boxes=[{"phrase": 0, "x0": 10.0, "y0": 10.0, "x1": 50.0, "y1": 60.0, "score": 0.9},
                      {"phrase": 3, "x0": 100.0, "y0": 20.0, "x1": 180.0, "y1": 90.0, "score": 0.8}],
               ref_exps=[{"text": "a dog in a field of flowers", "start": 0, "end": 27, "phrase": 0},
                         {"text": "a red car", "start": 36, "end": 45, "phrase": 3}])
    out = tmp_path / "out"
    write_shard(out, "s", [row], groups=frozenset({"ref_exps"}))
    run(out, "grit", tmp_path / "grit.parquet")
    record = pq.read_table(tmp_path / "grit.parquet").to_pylist()[0]
    assert record["ref_exps"] == [[0.0, 27.0, 0.05, 0.1, 0.25, 0.6, pytest.approx(0.9)],
                                  [36.0, 45.0, 0.5, 0.2, 0.9, 0.9, pytest.approx(0.8)]]
    assert [c[:2] for c in record["noun_chunks"]] == [[0.0, 5.0], [36.0, 45.0]]
    run(out, "odvg", tmp_path / "train.jsonl")
    regions = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])["grounding"]["regions"]
    assert regions[0]["ref_exp"] == "a dog in a field of flowers" and regions[0]["ref_exp_tokens_positive"] == [[0, 27]]
    assert caption[0:27] == regions[0]["ref_exp"] and regions[0]["phrase"] == "a dog"
