"""Input shard listing: brace ranges and lists, globs, directories, locally and on s3:// (moto)."""

from __future__ import annotations

import os

import fsspec
import pytest

from pipeline.stages.inputs import ShardListError, list_shards, shard_id


@pytest.fixture
def shard_dir(tmp_path):
    for name in ["00000.tar", "00001.tar", "00002.tar", "00010.tar", "00000.parquet", "00000_stats.json"]:
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_brace_range_keeps_zero_padding_and_lists_expand(shard_dir) -> None:
    assert [shard_id(u) for u in list_shards(str(shard_dir / "{00000..00002}.tar"))] == ["00000", "00001", "00002"]
    assert [shard_id(u) for u in list_shards(str(shard_dir / "{00001,00010}.tar"))] == ["00001", "00010"]


def test_globs_directories_and_space_separated_parts_take_only_tars(shard_dir) -> None:
    every = ["00000", "00001", "00002", "00010"]
    assert [shard_id(u) for u in list_shards(str(shard_dir / "*.tar"))] == every
    assert [shard_id(u) for u in list_shards(str(shard_dir))] == every  # img2dataset's .parquet/.json ignored
    both = f"{shard_dir / '00000.tar'} {shard_dir / '0001?.tar'}"
    assert [shard_id(u) for u in list_shards(both)] == ["00000", "00010"]


def test_local_shards_are_named_by_absolute_path(shard_dir, monkeypatch) -> None:
    """A manifest records its input by this name, and resume compares it."""
    monkeypatch.chdir(shard_dir)
    assert list_shards("{00000..00001}.tar") == [str(shard_dir / "00000.tar"), str(shard_dir / "00001.tar")]
    assert list_shards("./00000.tar") == [str(shard_dir / "00000.tar")]
    assert all(os.path.isabs(u) for u in list_shards("*.tar"))


def test_a_missing_shard_or_an_empty_match_is_an_error(shard_dir) -> None:
    with pytest.raises(ShardListError, match="00003.tar does not exist"):
        list_shards(str(shard_dir / "{00000..00003}.tar"))
    with pytest.raises(ShardListError, match="matched no .tar shards"):
        list_shards(str(shard_dir / "*.zip"))


def test_two_shards_with_one_name_are_refused(shard_dir) -> None:
    (shard_dir / "other").mkdir()
    (shard_dir / "other" / "00000.tar").write_bytes(b"x")
    with pytest.raises(ShardListError, match="same name '00000'"):
        list_shards(f"{shard_dir / '00000.tar'} {shard_dir / 'other'}")


@pytest.mark.slow
def test_s3_patterns_list_through_the_store(s3_env) -> None:
    fs = fsspec.filesystem("s3")
    for name in ["00000.tar", "00001.tar", "00001_stats.json"]:
        fs.pipe_file(f"{s3_env.bucket}/cc/{name}", b"x")
    expected = [s3_env.url("cc", "00000.tar"), s3_env.url("cc", "00001.tar")]
    assert list_shards(s3_env.url("cc", "{00000..00001}.tar")) == expected
    assert list_shards(s3_env.url("cc", "*.tar")) == expected
    assert list_shards(s3_env.url("cc")) == expected
    with pytest.raises(ShardListError, match="does not exist"):
        list_shards(s3_env.url("cc", "00002.tar"))
