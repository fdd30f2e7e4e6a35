"""Moving teacher batches from CPU worker processes to the teacher's process.

A batch of decoded images is tens of MB (16 images at 800x1333 are 51 MB). Pickled through a
`multiprocessing` pipe, the receiving process reads it in 64 KiB pieces and copies it again while
unpickling, and each piece needs the GIL back from the teacher loop, which launches GPU work from
Python. With shared memory the worker writes the pixels once into a segment and sends only the
segment's name and the image layout; the teacher reads the pixels in place.

Each batch has its own segment: the receiver unlinks it once the teacher is done with the batch.
Segment names start with a per-run prefix holding the driver's pid, so `remove_segments` clears
what a run leaves behind (a worker that dies between creating and sending a segment) and
`remove_stale_segments` what a killed run left (its pid no longer runs).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from pipeline.stages.prepare import TeacherBatch
from teacher.protocol import TeacherRequest

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
PREFIX = "glipl-"


@dataclasses.dataclass
class SharedBatch:
    """A `TeacherBatch` whose pixels live in the shared-memory segment `segment`."""

    batch: TeacherBatch  # requests with empty pixel arrays
    segment: str
    layout: list[tuple[int, tuple[int, ...]]]  # per request: byte offset and shape


def new_run_prefix() -> str:
    return f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}-"


def pack(batch: TeacherBatch, prefix: str) -> SharedBatch:
    """Worker side: copy the batch's pixels into a new segment (the only copy)."""
    sizes = [r.pixels.nbytes for r in batch.requests]
    name = f"{prefix}{secrets.token_hex(6)}"
    shm = SharedMemory(name=name, create=True, size=max(1, sum(sizes)))
    # The receiver owns the segment from here on: stop this process's resource tracker from
    # unlinking it (or warning about a leak) when this worker exits.
    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    layout = []
    offset = 0
    try:
        for req, size in zip(batch.requests, sizes):
            view = np.ndarray(req.pixels.shape, dtype=np.uint8, buffer=shm.buf, offset=offset)
            view[...] = req.pixels
            del view
            layout.append((offset, tuple(req.pixels.shape)))
            offset += size
    except BaseException:
        shm.close()
        shm.unlink()
        raise
    shm.close()
    empty = np.zeros((0, 0, 3), dtype=np.uint8)
    requests = [dataclasses.replace(r, pixels=empty) for r in batch.requests]
    return SharedBatch(TeacherBatch(batch.shard, batch.rows, requests), name, layout)


class OpenedBatch:
    """Receiver side: the batch with pixel arrays that view the segment; `release` when done."""

    def __init__(self, shared: SharedBatch) -> None:
        self._shm = SharedMemory(name=shared.segment)
        requests: list[TeacherRequest] = []
        for req, (offset, shape) in zip(shared.batch.requests, shared.layout):
            pixels = np.ndarray(shape, dtype=np.uint8, buffer=self._shm.buf, offset=offset)
            requests.append(dataclasses.replace(req, pixels=pixels))
        self.batch = TeacherBatch(shared.batch.shard, shared.batch.rows, requests)

    def release(self) -> None:
        """Drop the views, unmap and unlink. Callers must not keep a request's pixels."""
        self.batch = None  # type: ignore[assignment]
        try:
            self._shm.close()
        except BufferError:  # a view is still referenced somewhere: unlinking still frees it later
            log.debug("shared batch %s still viewed at release", self._shm.name)
        self._shm.unlink()


def shm_free_bytes() -> int:
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _segment_names(prefix: str) -> list[str]:
    try:
        return [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]
    except OSError:
        return []


def _unlink(names: list[str]) -> int:
    removed = 0
    for name in names:
        try:
            os.unlink(os.path.join(SHM_DIR, name))
            removed += 1
        except OSError:
            pass
    return removed


def remove_segments(prefix: str) -> int:
    """Unlink every segment of a run (after it ends, or after a worker died); returns how many."""
    return _unlink(_segment_names(prefix))


def _driver_gone(name: str) -> bool:
    pid_text = name[len(PREFIX):].split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def remove_stale_segments() -> int:
    """Unlink segments of runs whose driver process is gone (killed before it could clean up)."""
    return _unlink([n for n in _segment_names(PREFIX) if _driver_gone(n)])
