"""Fixtures for end-to-end job tests: the tiny teacher, sample shards, the real CC12M shard."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
CC12M = SHARED / "cc12m" / "cc12m-train-0000.tar"
# Small teacher inputs keep the CPU tests fast; the code path is the one real runs use.
FAST_FLAGS = ["--min-size", "128", "--max-size", "224", "--batch-size", "8"]


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> str:
    from teacher.tiny import write_tiny_teacher

    return str(write_tiny_teacher(tmp_path_factory.mktemp("tiny-teacher")))


@pytest.fixture(scope="session")
def generated_shards(tmp_path_factory) -> Path:
    from pipeline.samples import write_sample_shards

    d = tmp_path_factory.mktemp("shards")
    write_sample_shards(str(d), shards=2, samples=12, seed=7)
    return d


@pytest.fixture
def cc12m_shard() -> Path:
    if not CC12M.exists():
        pytest.skip(f"needs the real CC12M shard at {CC12M} (../shared/data is absent)")
    return CC12M


def run_job_subprocess(args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "label_cc12m.py"), "--no-progress", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def copy_inputs(dst: Path, *sources: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for src in sources:
        if src.is_dir():
            for f in src.glob("*.tar"):
                shutil.copy(f, dst / f.name)
        else:
            shutil.copy(src, dst / src.name)
    return dst
