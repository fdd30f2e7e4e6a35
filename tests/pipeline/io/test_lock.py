"""pipeline.io.lock: one run at a time holds an output, local or s3://; stale and dead holders are taken over."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import fsspec
import pytest

import storage
from pipeline.io.lock import LockHeldError, OutputLock
from tests.project import ROOT


@pytest.fixture(params=["local", "s3"])
def lock_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "s3":
        return request.getfixturevalue("s3_env").url("out")
    return str(tmp_path / "out")


def test_lock_excludes_a_second_holder(lock_root: str) -> None:
    a, b = OutputLock(lock_root), OutputLock(lock_root)
    a.acquire("run-a", "cfg1")
    with pytest.raises(LockHeldError, match="locked by run 'run-a'.*config cfg1"):
        b.acquire("run-b", "cfg2")
    a.heartbeat()
    a.release()
    b.acquire("run-b", "cfg2")
    assert b.read()[0]["run_id"] == "run-b"
    b.release()
    assert not storage.exists(b.url)


def test_stale_lock_is_taken_over_and_the_old_holder_notices(lock_root: str) -> None:
    a = OutputLock(lock_root, stale_after=0.2)
    a.acquire("run-a", "cfg")
    time.sleep(0.4)
    b = OutputLock(lock_root, stale_after=0.2)
    b.acquire("run-b", "cfg")
    with pytest.raises(LockHeldError, match="lost"):
        a.heartbeat()
    a.release()
    assert b.read()[0]["run_id"] == "run-b"
    b.release()


def test_heartbeat_thread_keeps_the_lock_fresh(tmp_path: Path) -> None:
    root = str(tmp_path / "out")
    a = OutputLock(root, stale_after=2.0)
    a.acquire("run-a", "cfg")
    a.start_heartbeat(0.1)
    time.sleep(2.5)
    with pytest.raises(LockHeldError):
        OutputLock(root, stale_after=2.0).acquire("run-b", "cfg")
    a.release()


def test_racing_acquirers_get_one_winner(lock_root: str) -> None:
    results: list[str] = []
    barrier = threading.Barrier(4)

    def contend(i: int) -> None:
        lock = OutputLock(lock_root)
        barrier.wait()
        try:
            lock.acquire(f"run-{i}", "cfg")
            results.append("won")
        except LockHeldError:
            results.append("lost")
    threads = [threading.Thread(target=contend, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost", "lost", "lost", "won"]
    fsspec.AbstractFileSystem.clear_instance_cache()


def test_lock_of_a_killed_process_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    root = str(tmp_path / "out")
    code = ("import os, sys; from pipeline.io.lock import OutputLock; "
            "OutputLock(sys.argv[1]).acquire('run-dead', 'cfg'); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, root], check=True, timeout=120,
                   cwd=ROOT)
    lock = OutputLock(root)
    assert lock.read()[0]["run_id"] == "run-dead"
    lock.acquire("run-new", "cfg")
    assert lock.read()[0]["run_id"] == "run-new"
    lock.release()
