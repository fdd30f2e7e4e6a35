"""Run the stages without Ray: CPU preparation in worker processes, teacher in this process,
writing in a thread. Used where Ray is not available (the GPU benchmark machine) and as the
plain reference the Ray pipeline is compared with. Worker processes hand their batches over in
shared memory (`pipeline.batch_transport`) when /dev/shm has room, else through pipes.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from pipeline import batch_transport
from pipeline.config import LabelConfig
from pipeline.prepare import PreparedShard, ShardPreparer, TeacherBatch
from pipeline.run import RunPlan, ShardOutcome, missing_shards
from pipeline.shards import shard_id
from pipeline.writer import apply_detections, write_shard
from teacher.protocol import Teacher, concurrent_calls
from teacher.resilient import predict_resilient

_DONE = "__done__"
log = logging.getLogger(__name__)


def _prepare_worker(config: LabelConfig, tasks: "mp.Queue", results: "mp.Queue", shm_prefix: str | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; it stops the workers
    try:
        preparer: ShardPreparer | None = ShardPreparer(config)
        broken = ""
    except Exception as exc:  # noqa: BLE001 - every shard this worker takes fails with the cause
        preparer, broken = None, f"the CPU worker could not start ({_cause(exc)})"
    while True:
        url = tasks.get()
        if url is None:
            results.put((_DONE, None, None))
            return
        if preparer is None:
            results.put(("error", url, broken))
            continue
        try:
            for item in preparer.prepare(url):
                if shm_prefix and isinstance(item, TeacherBatch):
                    item = batch_transport.pack(item, shm_prefix)
                results.put(("item", url, item))
        except Exception as exc:  # noqa: BLE001 - reported per shard by the consumer
            log.debug("shard %s failed", url, exc_info=True)
            results.put(("error", url, _cause(exc)))


def _cause(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _prepare_in_thread(config: LabelConfig, urls: list[str], results: "queue.Queue") -> None:
    preparer = ShardPreparer(config)
    for url in urls:
        try:
            for item in preparer.prepare(url):
                results.put(("item", url, item))
        except Exception as exc:  # noqa: BLE001
            results.put(("error", url, _cause(exc)))
    results.put((_DONE, None, None))


def _forwarded(source: "mp.Queue", size: int, producers: int, procs: list) -> "queue.Queue":
    """Unpickle worker results in a thread, so that receiving the next batch overlaps with the
    teacher running on the current one."""
    local: queue.Queue = queue.Queue(maxsize=size)

    def pump() -> None:
        done = 0
        while done < producers:
            try:
                msg = source.get(timeout=5.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if msg[0] == _DONE:
                done += 1
            local.put(msg)
        while done < producers:  # workers died: let the consumer finish
            local.put((_DONE, None, None))
            done += 1

    threading.Thread(target=pump, name="batch-receiver", daemon=True).start()
    return local


def run_inprocess(
    plan: RunPlan,
    teacher: Teacher,
    *,
    on_samples: Callable[[int], None] = lambda n: None,
    on_outcome: Callable[[ShardOutcome], None] = lambda o: None,
    cpu_workers: int = 0,
    queue_batches: int = 8,
    transport: str = "auto",
    stats: dict | None = None,
) -> list[ShardOutcome]:
    """Label `plan.todo`; `cpu_workers=0` prepares in a thread of this process.

    `transport` is how worker processes hand batches over: "shm", "pipe", or "auto" (shared
    memory when /dev/shm can hold the batches in flight).

    The teacher is called from `teacher.concurrent_calls` threads (default 1), so that a GPU
    teacher's host work for one batch overlaps its forward on another.

    `stats`, when given, receives `teacher_images`, `first_batch_at` and `last_batch_done_at`
    (perf_counter times: the steady state lies between them), `teacher_seconds` (time with a
    teacher call in flight), `wait_seconds` (time in the steady state with none: the teacher
    waited for batches) and `transport`.
    """
    stats = stats if stats is not None else {}
    cfg = plan.config
    teacher_id = getattr(teacher, "teacher_id", cfg.teacher)
    revision = cfg.teacher_revision or getattr(teacher, "revision", "unknown")
    outcomes: list[ShardOutcome] = []
    procs: list[mp.Process] = []
    shm_prefix = None
    callers = concurrent_calls(teacher)
    if cpu_workers > 0:
        shm_prefix = _shared_memory_prefix(cfg, transport, cpu_workers, queue_batches, callers)
        stats["transport"] = "shm" if shm_prefix else "pipe"
        ctx = mp.get_context("spawn")
        tasks = ctx.Queue()
        worker_results = ctx.Queue(maxsize=queue_batches)
        for url in plan.todo:
            tasks.put(url)
        for _ in range(cpu_workers):
            tasks.put(None)
        procs = [ctx.Process(target=_prepare_worker, args=(cfg, tasks, worker_results, shm_prefix), daemon=True)
                 for _ in range(cpu_workers)]
        for p in procs:
            p.start()
        producers = cpu_workers
        results = _forwarded(worker_results, queue_batches, producers, procs)
    else:
        results = queue.Queue(maxsize=queue_batches)
        threading.Thread(target=_prepare_in_thread, args=(cfg, list(plan.todo), results), daemon=True).start()
        producers = 1

    pending: dict[str, list[tuple[list[int], list]]] = {}
    teacher_seconds: dict[str, float] = {}
    labels: dict[str, list[Future]] = {}
    writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shard-writer")
    labeller = ThreadPoolExecutor(max_workers=callers, thread_name_prefix="teacher-call")
    free_callers = threading.Semaphore(callers)
    busy = _BusyClock()

    reporting = threading.Lock()

    def report(outcome: ShardOutcome) -> None:
        with reporting:
            outcomes.append(outcome)
            on_outcome(outcome)

    def write(prepared: PreparedShard) -> None:
        """Label results into the shard's rows, publish it, and report it at once (so that an
        interrupted run still counts the shards it published)."""
        try:
            for fut in labels.pop(prepared.url, []):
                fut.result()
            for rows, dets in pending.pop(prepared.url, []):
                apply_detections(prepared, rows, dets)
            manifest = write_shard(
                prepared, output=cfg.output, config_hash=plan.config_hash, settings=plan.settings,
                teacher_id=teacher_id, teacher_revision=revision, run_id=plan.run_id,
                timings={"teacher": teacher_seconds.pop(prepared.url, 0.0)},
            )
            outcome = ShardOutcome(prepared.shard, manifest=manifest)
        except Exception as exc:  # noqa: BLE001
            outcome = ShardOutcome(prepared.shard, error=f"shard {prepared.shard}: labelling or writing failed: {_cause(exc)}")
        report(outcome)

    def label(url: str, item: TeacherBatch | batch_transport.SharedBatch) -> None:
        opened = None
        try:
            if isinstance(item, batch_transport.SharedBatch):
                opened = batch_transport.OpenedBatch(item)
            batch = opened.batch if opened else item
            t0 = busy.start()
            try:
                dets = predict_resilient(teacher, batch.requests, max_tries=cfg.teacher_tries)
            finally:
                seconds = busy.stop() - t0
            with busy.lock:
                stats["teacher_images"] = stats.get("teacher_images", 0) + len(batch.requests)
                teacher_seconds[url] = teacher_seconds.get(url, 0.0) + seconds
                pending.setdefault(url, []).append((batch.rows, dets))
        finally:
            if opened:
                opened.release()
            free_callers.release()

    finished = 0
    completed = False
    try:
        while finished < producers:
            try:
                kind, url, item = results.get(timeout=5.0)
            except queue.Empty:
                if procs and any(p.exitcode not in (None, 0) for p in procs):
                    # A worker died, perhaps in the middle of writing a message into the queue
                    # the workers share, which can leave the receiver waiting for its rest for
                    # ever. Stop here: the shards not yet written are reported as not labelled.
                    break
                if procs and not any(p.is_alive() for p in procs):
                    break
                continue
            if kind == _DONE:
                finished += 1
            elif kind == "error":
                for fut in labels.pop(url, []):
                    fut.exception()
                pending.pop(url, None)
                teacher_seconds.pop(url, None)
                report(ShardOutcome(shard_id(url), error=f"shard {shard_id(url)} ({url}) failed: {item}"))
            elif isinstance(item, (batch_transport.SharedBatch, TeacherBatch)):
                free_callers.acquire()
                labels.setdefault(url, []).append(labeller.submit(label, url, item))
            elif isinstance(item, PreparedShard):
                on_samples(len(item.rows))
                writer.submit(write, item)
        completed = finished >= producers
    finally:
        died = sorted({p.exitcode for p in procs if p.exitcode not in (0, None)})
        if not completed:  # interrupted, or a worker died: stop the workers before their batches are cleaned up
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(timeout=5)
        labeller.shutdown(wait=True)
        busy.report(stats)
        if shm_prefix and (left := batch_transport.remove_segments(shm_prefix)):
            log.warning("removed %d shared-memory batch(es) that no teacher call released", left)
    writer.shutdown(wait=True)
    for p in procs:
        p.join(timeout=5)
    reason = (f"a CPU worker process died (exit code {', '.join(map(str, died))}) and the run stopped before it was done" if died
              else "the run ended before it was prepared")
    for url in missing_shards(plan, outcomes):
        report(ShardOutcome(shard_id(url), error=f"shard {shard_id(url)} ({url}) was not labelled: {reason}"))
    return outcomes


class _BusyClock:
    """Time with at least one teacher call in flight, whatever the number of concurrent calls."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.since = 0.0
        self.busy = 0.0
        self.first: float | None = None
        self.last = 0.0

    def start(self) -> float:
        now = time.perf_counter()
        with self.lock:
            if self.first is None:
                self.first = now
            if self.active == 0:
                self.since = now
            self.active += 1
        return now

    def stop(self) -> float:
        now = time.perf_counter()
        with self.lock:
            self.active -= 1
            if self.active == 0:
                self.busy += now - self.since
            self.last = max(self.last, now)
        return now

    def report(self, stats: dict) -> None:
        stats["teacher_seconds"] = self.busy
        if self.first is not None:
            stats["first_batch_at"], stats["last_batch_done_at"] = self.first, self.last
            stats["wait_seconds"] = max(0.0, self.last - self.first - self.busy)


def _shared_memory_prefix(cfg: LabelConfig, transport: str, cpu_workers: int, queue_batches: int, callers: int) -> str | None:
    """A segment-name prefix when batches go through shared memory, None for pipes."""
    if transport not in ("auto", "shm", "pipe"):
        raise ValueError(f"transport {transport!r} is not one of auto, shm, pipe")
    if transport == "pipe":
        return None
    if stale := batch_transport.remove_stale_segments():
        log.warning("removed %d shared-memory batch(es) left in %s by a run that was killed", stale, batch_transport.SHM_DIR)
    # Largest teacher input: shortest side min_size, longest at most max_size. Batches in
    # flight: the workers' queue and the receiver's (queue_batches each), one per worker waiting
    # to put, one in the receiver, one waiting for a free teacher caller, one per caller.
    batch_bytes = cfg.batch_size * cfg.min_size * cfg.max_size * 3
    need = (2 * queue_batches + cpu_workers + 2 + callers) * batch_bytes
    free = batch_transport.shm_free_bytes()
    if transport == "shm" and free < need:
        raise ValueError(
            f"transport shm: {batch_transport.SHM_DIR} has {free / 2**20:.0f} MB free but batches in flight may need "
            f"{need / 2**20:.0f} MB (a worker writing into a full {batch_transport.SHM_DIR} is killed); "
            "use transport auto or pipe, or give the machine more shared memory"
        )
    if transport == "auto" and free < need:
        log.warning(
            "%s has %.0f MB free but batches in flight may need %.0f MB: sending batches through pipes, "
            "which is slower; give the machine or container more shared memory (e.g. docker run --shm-size)",
            batch_transport.SHM_DIR, free / 2**20, need / 2**20,
        )
        return None
    return batch_transport.new_run_prefix()
