"""Fixtures every test folder may use: the tiny teacher, generated input shards, the real CC12M
shard, a moto S3 server for the session with a fresh bucket per test, a fault proxy."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import boto3
import fsspec
import pytest

from tests.project import CC12M
from tests.s3_server import FaultProxy, MotoServer, S3Env, s3_env_vars


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> str:
    from teacher.grounding_dino.tiny import write_tiny_teacher

    return str(write_tiny_teacher(tmp_path_factory.mktemp("tiny-teacher")))


@pytest.fixture(scope="session")
def generated_shards(tmp_path_factory) -> Path:
    from pipeline.tools.sample_shards import write_sample_shards

    d = tmp_path_factory.mktemp("shards")
    write_sample_shards(str(d), shards=2, samples=12, seed=7)
    return d


@pytest.fixture
def cc12m_shard() -> Path:
    if not CC12M.exists():
        pytest.skip(f"needs the real CC12M shard at {CC12M} (../shared/data is absent)")
    return CC12M


def _clear_fsspec_cache() -> None:
    """s3fs caches filesystem instances (and their clients, endpoints, listings) per process."""
    fsspec.AbstractFileSystem.clear_instance_cache()
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:
        pass


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Env]:
    """Point botocore (boto3, s3fs, child processes) at moto via env vars; a fresh bucket.

    Only the environment is changed, the way users configure a real S3-compatible endpoint, so
    code under test needs no test-only flags. Ray workers see it if Ray starts after this fixture,
    or via `runtime_env={'env_vars': s3_env.env_vars()}`.
    """
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "FSSPEC_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_env_vars(s3_server.endpoint).items():
        monkeypatch.setenv(name, value)
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_server.endpoint).create_bucket(Bucket=bucket)
    _clear_fsspec_cache()
    yield S3Env(bucket=bucket, endpoint=s3_server.endpoint)
    _clear_fsspec_cache()


@pytest.fixture
def fault_proxy(s3_env: S3Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of moto; AWS_ENDPOINT_URL points at it for this test.

    It starts with no rules; the test calls `fault_proxy.set_rules(FaultRule(...))`. `s3_env`
    still names the bucket; `s3_env.endpoint` stays the fault-free server (for setup/inspection).
    """
    proxy = FaultProxy(s3_env.endpoint, seed=1234).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    _clear_fsspec_cache()
    yield proxy
    proxy.stop()
    _clear_fsspec_cache()
