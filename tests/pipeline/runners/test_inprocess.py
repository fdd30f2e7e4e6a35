"""The runner without Ray: worker processes hand batches over in shared memory or pipes, and
both give the same output as preparing in a thread."""

from __future__ import annotations

import logging
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.config import build_config
from pipeline.plan import plan_run
from pipeline.runners import shm_transport
from pipeline.runners.inprocess import InProcessRunner
from pipeline.stages.prepare import TeacherBatch
from teacher.protocol import TeacherRequest


def _segments(prefix: str) -> list[str]:
    return [n for n in os.listdir(shm_transport.SHM_DIR) if n.startswith(prefix)]


def test_shared_batch_round_trip_and_release() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=shape, dtype=np.uint8) for shape in [(5, 7, 3), (1, 1, 3), (13, 4, 3)]]
    batch = TeacherBatch("s", [0, 2, 5], [TeacherRequest(im, 10, 20, f"cap {i}", [(0, 3)]) for i, im in enumerate(images)])
    prefix = shm_transport.new_run_prefix()
    shared = shm_transport.pack(batch, prefix)
    assert all(r.pixels.size == 0 for r in shared.batch.requests), "pixels do not travel in the message"
    assert _segments(prefix) == [shared.segment]
    opened = shm_transport.OpenedBatch(shared)
    assert opened.batch.rows == [0, 2, 5]
    for got, want, req in zip(opened.batch.requests, images, batch.requests):
        np.testing.assert_array_equal(got.pixels, want)
        assert (got.caption, got.spans, got.width, got.height) == (req.caption, req.spans, req.width, req.height)
    opened.release()
    assert _segments(prefix) == []


def test_remove_segments_clears_a_runs_leftovers() -> None:
    prefix = shm_transport.new_run_prefix()
    batch = TeacherBatch("s", [0], [TeacherRequest(np.zeros((2, 2, 3), np.uint8), 2, 2, "c", [(0, 1)])])
    shm_transport.pack(batch, prefix)
    shm_transport.pack(batch, prefix)
    assert shm_transport.remove_segments(prefix) == 2
    assert _segments(prefix) == []


def test_segments_of_a_killed_run_are_removed_and_live_ones_kept() -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_prefix = f"{shm_transport.PREFIX}{dead.stdout.strip()}-abc123-"
    live_prefix = shm_transport.new_run_prefix()
    batch = TeacherBatch("s", [0], [TeacherRequest(np.zeros((2, 2, 3), np.uint8), 2, 2, "c", [(0, 1)])])
    shm_transport.pack(batch, dead_prefix)
    shm_transport.pack(batch, live_prefix)
    assert shm_transport.remove_stale_segments() >= 1
    assert _segments(dead_prefix) == []
    assert len(_segments(live_prefix)) == 1
    shm_transport.remove_segments(live_prefix)


def _run(tmp_path, tiny_teacher, shards, name, wrap=None, **kwargs) -> tuple[list[dict], dict]:
    from teacher.load import load_teacher

    cfg = build_config({"input": str(shards / "*.tar"), "output": str(tmp_path / name), "teacher": tiny_teacher,
                        "min_size": 128, "max_size": 224, "batch_size": 4})
    teacher = load_teacher(tiny_teacher, cfg.grounding_settings(), device="cpu")
    teacher = wrap(teacher) if wrap else teacher
    runner = InProcessRunner(plan_run(cfg), teacher, **{"cpu_workers": 0, **kwargs})
    outcomes = runner.run()
    assert [o.error for o in outcomes] == [None, None]
    rows = []
    for f in sorted((tmp_path / name / "parquet").glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows, runner.stats


@pytest.mark.slow
def test_transports_give_the_same_output_and_leave_no_segments(tmp_path, tiny_teacher, generated_shards, caplog) -> None:
    ours = f"{shm_transport.PREFIX}{os.getpid()}-"  # this process's batches (other processes make their own)
    in_thread, _ = _run(tmp_path, tiny_teacher, generated_shards, "thread", cpu_workers=0)
    shm, stats_shm = _run(tmp_path, tiny_teacher, generated_shards, "shm", cpu_workers=2, transport="shm")
    pipe, stats_pipe = _run(tmp_path, tiny_teacher, generated_shards, "pipe", cpu_workers=1, transport="pipe")
    assert (stats_shm["transport"], stats_pipe["transport"]) == ("shm", "pipe")
    assert sum(r["status"] == "ok" for r in in_thread) >= 10
    assert any(r["boxes"] for r in in_thread)
    assert shm == in_thread and pipe == in_thread
    assert _segments(ours) == []
    assert "shared-memory" not in caplog.text


@pytest.mark.slow
def test_too_little_shared_memory_falls_back_to_pipes_and_says_so(tmp_path, tiny_teacher, generated_shards, monkeypatch, caplog) -> None:
    monkeypatch.setattr(shm_transport, "shm_free_bytes", lambda: 2**20)
    with caplog.at_level(logging.WARNING):
        rows, stats = _run(tmp_path, tiny_teacher, generated_shards, "small-shm", cpu_workers=1)
    assert stats["transport"] == "pipe"
    assert "--shm-size" in caplog.text and "1 MB free" in caplog.text
    assert len(rows) == 24


class _OverlapRecorder:
    """The real teacher, declared safe for two concurrent calls; records how many overlapped."""

    concurrent_calls = 2

    def __init__(self, teacher) -> None:
        self.teacher, self.teacher_id, self.revision, self.device = teacher, teacher.teacher_id, teacher.revision, "cpu"
        self.lock = threading.Lock()
        self.active = self.most_active = 0

    def predict(self, requests):
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            time.sleep(0.05)  # host work that another call's device pass can overlap
            return self.teacher.predict(requests)
        finally:
            with self.lock:
                self.active -= 1


def test_a_teacher_that_allows_two_calls_gets_them_and_the_output_is_unchanged(tmp_path, tiny_teacher, generated_shards) -> None:
    one, stats_one = _run(tmp_path, tiny_teacher, generated_shards, "one", cpu_workers=0)
    recorders = []
    two, stats_two = _run(tmp_path, tiny_teacher, generated_shards, "two", cpu_workers=0,
                          wrap=lambda t: recorders.append(_OverlapRecorder(t)) or recorders[-1])
    assert two == one
    assert recorders[0].most_active == 2
    assert stats_two["teacher_images"] == stats_one["teacher_images"] == sum(r["status"] == "ok" for r in one)
    steady = stats_two["last_batch_done_at"] - stats_two["first_batch_at"]
    assert 0 < stats_two["teacher_seconds"] <= steady + 1e-6
    assert stats_two["wait_seconds"] == pytest.approx(steady - stats_two["teacher_seconds"], abs=1e-6)


@pytest.mark.slow
def test_a_batch_that_cannot_be_opened_fails_its_shard_without_hanging_the_run(tmp_path, tiny_teacher, generated_shards, monkeypatch) -> None:
    from teacher.load import load_teacher

    def unreadable(shared):
        raise OSError("cannot map the shared-memory batch (injected)")

    monkeypatch.setattr(shm_transport, "OpenedBatch", unreadable)
    cfg = build_config({"input": str(generated_shards / "*.tar"), "output": str(tmp_path / "out"), "teacher": tiny_teacher,
                        "min_size": 128, "max_size": 224, "batch_size": 4})
    teacher = load_teacher(tiny_teacher, cfg.grounding_settings(), device="cpu")
    outcomes = InProcessRunner(plan_run(cfg), teacher, cpu_workers=1, transport="shm").run()
    assert len(outcomes) == 2
    assert all(o.error and "cannot map" in o.error and o.shard in o.error for o in outcomes), [o.error for o in outcomes]
    assert not list((tmp_path / "out").glob("parquet/*.parquet"))


def test_shared_memory_asked_for_but_too_small_is_refused_with_the_sizes(tmp_path, tiny_teacher, generated_shards, monkeypatch) -> None:
    monkeypatch.setattr(shm_transport, "shm_free_bytes", lambda: 2**20)
    cfg = build_config({"input": str(generated_shards / "*.tar"), "output": str(tmp_path / "out"), "teacher": tiny_teacher})
    with pytest.raises(ValueError, match=r"has 1 MB free but batches in flight may need \d+ MB"):
        InProcessRunner(plan_run(cfg), SimpleNamespace(concurrent_calls=1), cpu_workers=2, transport="shm")
