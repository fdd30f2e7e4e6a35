"""CUDA out-of-memory in the teacher, injected on CPU: split, retry, then `teacher_error`."""

from __future__ import annotations

import numpy as np
import torch

from teacher.protocol import Detection, TeacherRequest
from teacher.resilient import TeacherFailure, predict_resilient


class FlakyTeacher:
    """Raises CUDA OOM for batches larger than `max_ok`, and always for captions containing 'poison'."""

    teacher_id = "flaky"
    revision = "0"
    device = "cpu"
    concurrent_calls = 1

    def __init__(self, max_ok: int) -> None:
        self.max_ok = max_ok
        self.calls: list[int] = []

    def predict(self, requests):
        self.calls.append(len(requests))
        if len(requests) > self.max_ok or any("poison" in r.caption for r in requests):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [[Detection(0, 0.0, 0.0, 1.0, 1.0, 0.5)] for _ in requests]


def _requests(captions):
    return [TeacherRequest(np.zeros((4, 4, 3), np.uint8), 4, 4, c, [(0, 1)]) for c in captions]


def test_batch_is_split_until_it_fits():
    teacher = FlakyTeacher(max_ok=2)
    out = predict_resilient(teacher, _requests(["a"] * 8), max_tries=3)
    assert all(isinstance(r, list) and len(r) == 1 for r in out)
    assert teacher.calls[0] == 8 and max(teacher.calls[1:]) <= 4


def test_sample_that_never_fits_becomes_teacher_error_after_bounded_tries():
    teacher = FlakyTeacher(max_ok=16)
    captions = ["a", "b", "poison c", "d"]
    out = predict_resilient(teacher, _requests(captions), max_tries=3)
    assert isinstance(out[2], TeacherFailure) and "out of memory" in out[2] and "3 tries" in out[2]
    assert [isinstance(r, list) for r in out] == [True, True, False, True]
    assert len(teacher.calls) <= 1 + 2 + 2 + 3  # bisection plus bounded retries, never endless


def test_job_marks_oom_samples_teacher_error_and_keeps_the_rest(tmp_path, tiny_teacher, generated_shards):
    from pipeline.config import build_config
    from pipeline.plan import plan_run
    from pipeline.runners.inprocess import InProcessRunner
    from teacher.load import load_teacher
    from teacher.protocol import GroundingSettings
    from tests.jobs.output_checks import check_output

    real = load_teacher(tiny_teacher, GroundingSettings(), device="cpu")

    class OomOnSomeCaptions:
        teacher_id, revision, device, concurrent_calls = real.teacher_id, real.revision, "cpu", 1

        def predict(self, requests):
            if any("red" in r.caption for r in requests):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
            return real.predict(requests)

    pattern = str(generated_shards / "00000.tar")
    cfg = build_config({"input": pattern, "output": str(tmp_path / "out"), "teacher": tiny_teacher,
                        "min_size": 128, "max_size": 224, "batch_size": 8})
    plan = plan_run(cfg)
    outcomes = InProcessRunner(plan, OomOnSomeCaptions(), cpu_workers=0).run()
    assert [o.error for o in outcomes] == [None]
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "out" / "parquet" / "00000.parquet").to_pylist()
    red = [r for r in rows if "red" in r["caption"] and r["phrases"] and r["width"]]
    others = [r for r in rows if r["status"] == "ok"]
    assert red and all(r["status"] == "teacher_error" and "out of memory" in r["error"] for r in red)
    assert others, "samples without the injected failure keep their boxes"
    check_output(str(tmp_path / "out"), pattern)
