"""The test S3 endpoint: env-only configuration works for s3fs, boto3, subprocesses and Ray
workers; the fault proxy injects what it is told, and s3fs's retries ride out transient faults."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import fsspec
import pytest

from tests.s3_server import FaultProxy, FaultRule, S3Env


def test_s3fs_and_boto3_use_the_env_endpoint(s3_env: S3Env) -> None:
    fs, path = fsspec.core.url_to_fs(s3_env.url("a/b.txt"))
    fs.pipe_file(path, b"hello")
    body = boto3.client("s3").get_object(Bucket=s3_env.bucket, Key="a/b.txt")["Body"].read()
    assert body == b"hello"
    assert os.environ["AWS_ENDPOINT_URL"] == s3_env.endpoint


def test_bucket_is_fresh_per_test(s3_env: S3Env) -> None:
    fs, path = fsspec.core.url_to_fs(s3_env.url())
    assert fs.ls(path) == []


def test_subprocess_inherits_the_endpoint(s3_env: S3Env) -> None:
    fsspec.filesystem("s3").pipe_file(f"{s3_env.bucket}/x", b"from parent")
    code = "import fsspec, sys; sys.stdout.write(fsspec.open(sys.argv[1]).open().read().decode())"
    out = subprocess.run([sys.executable, "-c", code, s3_env.url("x")], capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout == "from parent"


@pytest.mark.slow
def test_ray_workers_inherit_the_endpoint(s3_env: S3Env) -> None:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray already running with another environment")
    fsspec.filesystem("s3").pipe_file(f"{s3_env.bucket}/r", b"ray")

    @ray.remote
    def read(url: str) -> bytes:
        import fsspec as f

        return f.open(url).open().read()

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.get(read.remote(s3_env.url("r")), timeout=120) == b"ray"
    finally:
        ray.shutdown()


def test_fault_decisions_are_deterministic() -> None:
    def run() -> list[str | None]:
        proxy = FaultProxy("http://127.0.0.1:1", [FaultRule("slowdown", fraction=0.5)], seed=7)
        try:
            return [proxy.decide("PUT", f"/b/k{i}") for i in range(40)]
        finally:
            proxy.stop()

    first = run()
    assert first == run()
    assert 5 < first.count("slowdown") < 35


def test_rule_filters_skip_and_cap() -> None:
    rule = FaultRule("reset", methods=frozenset({"PUT"}), path_regex=r"partNumber=", skip=1, max_faults=2)
    proxy = FaultProxy("http://127.0.0.1:1", [rule])
    try:
        assert proxy.decide("GET", "/b/k?partNumber=1") is None
        assert proxy.decide("PUT", "/b/k") is None
        got = [proxy.decide("PUT", f"/b/k?partNumber={i}&uploadId=u") for i in range(5)]
    finally:
        proxy.stop()
    assert got == [None, "reset", "reset", None, None]
    assert proxy.counts == {"reset": 2}


def test_s3fs_survives_transient_slowdowns(s3_env: S3Env, fault_proxy: FaultProxy) -> None:
    fault_proxy.set_rules(FaultRule("slowdown", fraction=0.3, max_faults=2))
    fs = fsspec.filesystem("s3")
    for i in range(4):
        fs.pipe_file(f"{s3_env.bucket}/k{i}", b"x" * (i + 1))
    fs.invalidate_cache()
    assert [fs.cat_file(f"{s3_env.bucket}/k{i}") for i in range(4)] == [b"x" * (i + 1) for i in range(4)]
    assert fault_proxy.counts["slowdown"] >= 1


def test_s3fs_survives_connection_resets(s3_env: S3Env, fault_proxy: FaultProxy) -> None:
    fault_proxy.set_rules(FaultRule("reset", max_faults=4))
    fs = fsspec.filesystem("s3")
    fs.pipe_file(f"{s3_env.bucket}/r", b"payload")
    assert fs.cat_file(f"{s3_env.bucket}/r") == b"payload"
    assert fault_proxy.counts["reset"] == 4


def test_multipart_upload_survives_faulty_parts(s3_env: S3Env, fault_proxy: FaultProxy, tmp_path) -> None:
    fault_proxy.set_rules(
        FaultRule("slowdown", methods=frozenset({"PUT"}), path_regex=r"partNumber=2", max_faults=2),
        FaultRule("reset", methods=frozenset({"POST"}), path_regex=r"uploadId=", max_faults=1),
    )
    data = os.urandom(11 * 2**20)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    fs = fsspec.filesystem("s3")
    fs.put_file(str(local), f"{s3_env.bucket}/big.bin", chunksize=5 * 2**20)
    assert fs.cat_file(f"{s3_env.bucket}/big.bin") == data
    assert fault_proxy.counts == {"slowdown": 2, "reset": 1}


def test_access_denied_surfaces_as_permission_error(s3_env: S3Env, fault_proxy: FaultProxy) -> None:
    fault_proxy.set_rules(FaultRule("forbidden", path_regex=rf"^/{s3_env.bucket}/denied/"))
    fs = fsspec.filesystem("s3")
    with pytest.raises(PermissionError):
        fs.pipe_file(f"{s3_env.bucket}/denied/x", b"no")
    fs.pipe_file(f"{s3_env.bucket}/allowed/x", b"yes")
    assert fs.cat_file(f"{s3_env.bucket}/allowed/x") == b"yes"
    assert fault_proxy.counts["forbidden"] >= 1
