"""storage: atomic publish, safe names, retries and permanent errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import storage
from tests.s3_server import FaultProxy, FaultRule, S3Env


def test_join_and_filesystem(tmp_path: Path) -> None:
    assert storage.join("s3://b/out/", "parquet", "1.parquet") == "s3://b/out/parquet/1.parquet"
    assert storage.join("/x", "a/b", "c") == "/x/a/b/c"
    with pytest.raises(ValueError):
        storage.join("/x", "../y")
    fs, path = storage.filesystem(str(tmp_path / "a"))
    assert storage.is_local(fs) and path.endswith("/a")


@pytest.mark.parametrize("key", ["..", "../../etc/passwd", "/abs/path", "a/b", "a.b.c", "nul\x00x", "é ü", "%2E", "-"])
def test_safe_member_name_neutralises(key: str) -> None:
    name = storage.safe_member_name(key)
    assert name and "/" not in name and "." not in name and "\x00" not in name and name not in ("..", ".")


def test_safe_member_name_is_injective_and_keeps_plain_keys() -> None:
    keys = ["000012345", "a.b", "a%2Eb", "a/b", "a%2Fb", "x" * 500, "x" * 499 + "y"]
    names = [storage.safe_member_name(k) for k in keys]
    assert names[0] == "000012345"
    assert len(set(names)) == len(keys)
    assert all(len(n) <= 200 for n in names)
    with pytest.raises(ValueError):
        storage.safe_member_name("")


def test_publish_bytes_local_roundtrip(tmp_path: Path) -> None:
    url = str(tmp_path / "deep" / "dir" / "f.bin")
    storage.publish_bytes(url, b"one")
    storage.publish_bytes(url, b"two")
    assert storage.read_bytes(url) == b"two" and storage.exists(url)
    assert os.listdir(tmp_path / "deep" / "dir") == ["f.bin"]
    assert storage.list_prefix(str(tmp_path / "deep" / "dir"), ".bin") == [url]
    storage.remove(url)
    storage.remove(url)
    assert not storage.exists(url)


def test_local_publish_failure_leaves_old_content_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = str(tmp_path / "f.bin")
    storage.publish_bytes(url, b"old")

    def boom(src: str, dst: str) -> None:
        raise OSError(errno.EIO, "disk died")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk died"):
        storage.publish_bytes(url, b"new" * 1000)
    assert (tmp_path / "f.bin").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


class _SourceDiesMidway:
    """A source file whose second read fails, as a disk or a producer might mid-copy."""

    def __init__(self) -> None:
        self.reads = 0

    def __enter__(self) -> "_SourceDiesMidway":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise OSError(errno.EIO, "source died")
        return b"x" * 1024


def test_local_publish_file_failure_midway_leaves_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, url = tmp_path / "src.bin", str(tmp_path / "out" / "f.bin")
    src.write_bytes(b"y" * 4096)
    storage.publish_file(str(src), url)
    source = _SourceDiesMidway()
    monkeypatch.setattr(storage, "open", lambda *a, **k: source, raising=False)
    with pytest.raises(OSError, match="source died"):
        storage.publish_file(str(src), url)
    assert source.reads == 2
    assert (tmp_path / "out" / "f.bin").read_bytes() == b"y" * 4096
    assert os.listdir(tmp_path / "out") == ["f.bin"]


@pytest.mark.slow
def test_s3_multipart_failure_midway_leaves_no_object(s3_env: S3Env, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """Part 1 is uploaded, part 2 is refused: the final key must not appear (nor a stub)."""
    fault_proxy.set_rules(FaultRule("forbidden", methods=frozenset({"PUT"}), path_regex=r"partNumber=2"))
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(101 * 2**20)
    url = s3_env.url("out", "big.bin")
    with pytest.raises(PermissionError, match=f"publish {url}"):
        storage.publish_file(str(big), url)
    assert fault_proxy.counts["forbidden"] >= 1
    assert not storage.exists(url)


def test_s3_roundtrip_under_injected_faults(s3_env: S3Env, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    fault_proxy.set_rules(FaultRule("slowdown", fraction=0.5, max_faults=6),
                          FaultRule("reset", methods=frozenset({"GET"}), max_faults=2))
    local = tmp_path / "f.bin"
    local.write_bytes(os.urandom(100_000))
    storage.publish_bytes(s3_env.url("a.bin"), b"abc")
    storage.publish_file(str(local), s3_env.url("b.bin"))
    assert storage.read_bytes(s3_env.url("a.bin")) == b"abc"
    assert storage.read_bytes(s3_env.url("b.bin")) == local.read_bytes()
    assert storage.list_prefix(s3_env.url(), ".bin") == [s3_env.url("a.bin"), s3_env.url("b.bin")]
    assert fault_proxy.counts["slowdown"] >= 1


def test_with_retries_outlasts_a_burst_then_gives_up() -> None:
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise OSError(errno.EBUSY, "SlowDown")
        return "done"
    assert storage.with_retries(flaky, base_delay=0.001, what="op x") == "done"

    def down() -> None:
        raise ConnectionResetError("reset")
    with pytest.raises(OSError, match="op y: still failing after 3 attempts"):
        storage.with_retries(down, attempts=3, base_delay=0.001, what="op y")


def test_permanent_errors_are_not_retried() -> None:
    calls = {"n": 0}

    def denied() -> None:
        calls["n"] += 1
        raise PermissionError("Access Denied")
    with pytest.raises(PermissionError, match="publish s3://b/k: access denied.*Fix"):
        storage.with_retries(denied, base_delay=0.001, what="publish s3://b/k")
    assert calls["n"] == 1


def test_403_is_a_clear_permission_error(s3_env: S3Env, fault_proxy: FaultProxy) -> None:
    fault_proxy.set_rules(FaultRule("forbidden", path_regex=rf"^/{s3_env.bucket}/denied"))
    url = s3_env.url("denied", "x.parquet")
    with pytest.raises(PermissionError, match=f"publish {url}: access denied"):
        storage.publish_bytes(url, b"x")
    storage.publish_bytes(s3_env.url("ok", "x.parquet"), b"x")


def test_missing_bucket_is_a_clear_error(s3_env: S3Env) -> None:
    with pytest.raises(FileNotFoundError, match="bucket does not exist.*create the bucket"):
        storage.publish_bytes("s3://no-such-bucket-here/x", b"x")
