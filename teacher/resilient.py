"""Run a teacher on a batch so that out-of-memory errors never loop forever.

On CUDA OOM the batch is split in halves and each half retried; a single sample that still
fails after `max_tries` attempts is reported as a per-sample failure (status `teacher_error`),
and the rest of the batch keeps its boxes.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from teacher.protocol import Detection, Teacher, TeacherRequest

log = logging.getLogger(__name__)


class TeacherFailure(str):
    """The error text for one sample the teacher could not process."""


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def predict_resilient(
    teacher: Teacher, requests: Sequence[TeacherRequest], *, max_tries: int = 3
) -> list[list[Detection] | TeacherFailure]:
    """Predict; a failing batch is bisected so only the samples that fail alone get an error."""
    results: list[list[Detection] | TeacherFailure | None] = [None] * len(requests)
    stack: list[tuple[list[int], int]] = [(list(range(len(requests))), 0)]
    while stack:
        idx, tries = stack.pop()
        try:
            out = teacher.predict([requests[i] for i in idx])
            for i, dets in zip(idx, out):
                results[i] = dets
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status, never a crash
            _free_cache()
            oom = is_out_of_memory(exc)
            if len(idx) > 1:
                half = len(idx) // 2
                log.warning("teacher failed on %d samples (%s); splitting the batch", len(idx), exc.__class__.__name__)
                stack.append((idx[half:], tries))
                stack.append((idx[:half], tries))
            elif oom and tries + 1 < max_tries:
                stack.append((idx, tries + 1))
            else:
                kind = "out of memory" if oom else f"{exc.__class__.__name__}: {exc}"
                msg = f"teacher failed after {tries + 1} tries ({kind})"[:500]
                for i in idx:
                    results[i] = TeacherFailure(msg)
    return [r if r is not None else TeacherFailure("teacher returned no result") for r in results]
