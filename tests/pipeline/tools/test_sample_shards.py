"""pipeline.tools.sample_shards writes img2dataset-layout shards; tests.hostile_corpus writes hostile ones."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from pipeline.stages.images import decode_for_teacher
from pipeline.tools.sample_shards import FIXED_MTIME, main, sample_key, write_sample_shards
from tests.hostile_corpus import hostile_samples, truncate_tar, write_hostile_shard
from tests.project import ROOT

REPO = ROOT
IMG2DATASET_FIELDS = {
    "url", "caption", "key", "status", "error_message", "width", "height",
    "original_width", "original_height", "exif",
}


def _read(paths: list[str]) -> list[dict]:
    return list(wds.WebDataset(paths, shardshuffle=False, empty_check=False))


def test_shards_are_readable_by_webdataset_with_img2dataset_members(tmp_path):
    paths = write_sample_shards(tmp_path, shards=2, samples=6, seed=3, max_side=400)
    assert [os.path.basename(p) for p in paths] == ["00000.tar", "00001.tar"]
    samples = _read(paths)
    assert [s["__key__"] for s in samples] == [sample_key(shard, i) for shard in (0, 1) for i in range(6)]
    assert samples[7]["__key__"] == "000010001"
    for sample in samples:
        members = {k for k in sample if not k.startswith("__")}
        image_exts = members - {"json", "txt"}
        assert len(image_exts) == 1 and image_exts <= {"jpg", "png", "webp"}, members
        ext = image_exts.pop()
        meta = json.loads(sample["json"])
        assert set(meta) == IMG2DATASET_FIELDS
        assert meta["key"] == sample["__key__"] and meta["status"] == "success" and meta["error_message"] is None
        caption = sample["txt"].decode("utf-8")
        assert caption == meta["caption"] and caption.strip()
        image = Image.open(io.BytesIO(sample[ext]))
        assert image.format == {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext]
        assert image.size == (meta["width"], meta["height"])
        assert meta["original_width"] >= meta["width"] and meta["original_height"] >= meta["height"]
        decoded = decode_for_teacher(sample[ext])
        assert (decoded.width, decoded.height) == image.size


def test_members_are_grouped_sorted_and_fixed(tmp_path):
    [path] = write_sample_shards(tmp_path, shards=1, samples=5, max_side=200)
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    keys = [n.split(".", 1)[0] for n in names]
    assert keys == sorted(keys)  # every key's members contiguous, keys in generation order
    for key in set(keys):
        exts = [n.split(".", 1)[1] for n in names if n.startswith(key)]
        assert exts == sorted(exts) and len(exts) == 3  # as webdataset's TarWriter orders them
    assert {m.mtime for m in members} == {FIXED_MTIME}
    assert {(m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0o644)}


def test_same_arguments_give_identical_bytes(tmp_path):
    first = write_sample_shards(tmp_path / "a", shards=2, samples=4, seed=11, max_side=300)
    second = write_sample_shards(tmp_path / "b", shards=2, samples=4, seed=11, max_side=300)
    other_seed = write_sample_shards(tmp_path / "c", shards=1, samples=4, seed=12, max_side=300)
    for a, b in zip(first, second):
        assert Path(a).read_bytes() == Path(b).read_bytes()
    assert Path(first[0]).read_bytes() != Path(other_seed[0]).read_bytes()
    assert Path(first[0]).read_bytes() != Path(first[1]).read_bytes()


def test_start_writes_the_same_shard_as_a_full_run(tmp_path):
    full = write_sample_shards(tmp_path / "full", shards=3, samples=3, seed=2, max_side=200)
    [late] = write_sample_shards(tmp_path / "late", shards=1, samples=3, seed=2, start=2, max_side=200)
    assert os.path.basename(late) == "00002.tar"
    assert Path(late).read_bytes() == Path(full[2]).read_bytes()
    assert [s["__key__"] for s in _read([late])] == ["000020000", "000020001", "000020002"]


def test_samples_vary_in_format_size_and_caption(tmp_path):
    paths = write_sample_shards(tmp_path, shards=1, samples=60, seed=0, max_side=256)
    samples = _read(paths)
    formats = Counter(next(k for k in s if k in {"jpg", "png", "webp"}) for s in samples)
    assert set(formats) == {"jpg", "png", "webp"} and formats["jpg"] > formats["png"]
    sizes = {(json.loads(s["json"])["width"], json.loads(s["json"])["height"]) for s in samples}
    assert len(sizes) > 30
    assert all(16 <= min(size) and max(size) <= 256 for size in sizes)
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)
    captions = [s["txt"].decode() for s in samples]
    assert len(set(captions)) > 40
    assert any("<PERSON>" in c for c in captions)


def test_with_stats_writes_img2dataset_side_files(tmp_path):
    write_sample_shards(tmp_path, shards=2, samples=3, max_side=128, with_stats=True)
    assert sorted(os.listdir(tmp_path)) == [
        "00000.parquet", "00000.tar", "00000_stats.json", "00001.parquet", "00001.tar", "00001_stats.json",
    ]
    table = pq.read_table(tmp_path / "00001.parquet")
    assert table.column("key").to_pylist() == ["000010000", "000010001", "000010002"]
    assert set(table.column_names) == IMG2DATASET_FIELDS
    stats = json.loads((tmp_path / "00000_stats.json").read_text())
    assert stats["count"] == stats["successes"] == 3


def test_cli_main_and_argument_errors(tmp_path, capsys):
    assert main([str(tmp_path), "--shards", "1", "--samples", "2", "--seed", "4", "--max-side", "128"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "00000.tar")]
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--shards", "1", "--samples", "10001"])
    assert info.value.code == 2


def test_module_runs_as_a_script(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.tools.sample_shards", str(tmp_path), "--shards", "1", "--samples", "2", "--start", "5",
         "--max-side", "128"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "00005.tar")]


# -- the hostile corpus (tests/hostile_corpus.py) -------------------------------------------


def test_hostile_shard_is_fast_and_lists_every_key(tmp_path):
    hostile_samples.cache_clear()  # time the image generation too, not a cached corpus
    started = time.perf_counter()
    expected = write_hostile_shard(tmp_path / "hostile.tar")
    assert time.perf_counter() - started < 2.0
    assert list(expected) == [s.key for s in hostile_samples()]
    with tarfile.open(tmp_path / "hostile.tar") as tar:
        names = tar.getnames()
    assert names == [name for s in hostile_samples() for name, _ in s.members]
    assert {"no_caption", "missing_image", "decode_error", "image_too_large", "duplicate_key", "ok"} == set(
        expected.values()
    )


def test_hostile_duplicate_key_is_not_contiguous(tmp_path):
    write_hostile_shard(tmp_path / "hostile.tar")
    keys = [s["__key__"] for s in _read([str(tmp_path / "hostile.tar")])]
    positions = [i for i, key in enumerate(keys) if key == "hostile_duplicate"]
    assert len(positions) == 2 and positions[1] - positions[0] > 1


def test_truncate_tar_keeps_a_prefix_and_lists_whole_members(tmp_path):
    source = tmp_path / "hostile.tar"
    write_hostile_shard(source)
    whole = truncate_tar(source, tmp_path / "cut.tar", 0.5)
    data, cut = source.read_bytes(), (tmp_path / "cut.tar").read_bytes()
    assert cut == data[: len(data) // 2]
    assert 0 < len(whole) < len(tarfile.open(source).getnames())
    with tarfile.open(fileobj=io.BytesIO(cut), mode="r|") as tar:
        readable = []
        with pytest.raises(tarfile.ReadError):
            for member in tar:
                tar.extractfile(member).read()
                readable.append(member.name)
    assert readable[: len(whole)] == whole
    with pytest.raises(ValueError):
        truncate_tar(source, tmp_path / "x.tar", 1.0)
