"""`OutputLayout`: every path under an output root, the one safe join, the one manifest reader."""

from __future__ import annotations

import pytest

import storage
from pipeline.io.layout import OutputLayout, UnreadableManifest
from schemas import Manifest
from schemas.manifest import OutputFile


def test_paths_under_a_local_or_s3_root() -> None:
    for root in ("/data/out", "/data/out/", "s3://bucket/out"):
        layout = OutputLayout(root)
        base = root.rstrip("/")
        assert layout.parquet("00042") == f"{base}/parquet/00042.parquet"
        assert layout.tar("00042") == f"{base}/wds/00042.tar"
        assert layout.manifest("00042") == f"{base}/_manifests/00042.json"
        assert layout.run_record("r1") == f"{base}/_runs/r1.json"
        assert layout.lock == f"{base}/_lock.json"
    assert OutputLayout.parquet_name("x") == "parquet/x.parquet" and OutputLayout.tar_name("x") == "wds/x.tar"


@pytest.mark.parametrize("shard", ["../escape", "a/../../b", "bad\x00name"])
def test_no_shard_name_leaves_the_root(shard: str) -> None:
    with pytest.raises(ValueError, match="unsafe path part"):
        OutputLayout("/data/out").parquet(shard)
    with pytest.raises(ValueError, match="unsafe path part"):
        storage.join("s3://b/out", "_manifests", shard)


def _manifest(shard: str) -> Manifest:
    return Manifest(shard=shard, input_uri=f"/in/{shard}.tar", config_hash="h", teacher_id="t", teacher_revision="r",
                    samples=1, status_counts={"ok": 1}, boxes=0, parquet=OutputFile(f"parquet/{shard}.parquet", 1, "0"),
                    tar=OutputFile(f"wds/{shard}.tar", 1, "0"), tar_samples=1, timings={}, run_id="r", created_at="now")


def test_committed_shards_and_the_manifest_reader(tmp_path) -> None:
    layout = OutputLayout(str(tmp_path))
    assert layout.committed_shards() == [] and layout.read_manifest("a") is None  # a fresh output
    for shard in ("b", "a"):
        storage.publish_bytes(layout.manifest(shard), _manifest(shard).to_json())
    storage.publish_bytes(layout.parquet("c"), b"data without a manifest")
    assert layout.committed_shards() == ["a", "b"]
    assert layout.read_manifest("a") == _manifest("a")
    storage.publish_bytes(layout.manifest("broken"), b"{not json")
    with pytest.raises(UnreadableManifest, match="broken.json is unreadable"):
        layout.read_manifest("broken")
