"""The stages without Ray: CPU preparation in worker processes, the teacher in this process,
writing in threads. For machines without Ray (the GPU benchmark machine) and as the plain
reference the Ray runner is compared with. Worker processes hand their batches over in shared
memory (`pipeline.runners.shm_transport`) when /dev/shm has room, else through pipes.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.config import LabelConfig
from pipeline.plan import RunPlan, ShardOutcome, missing_shards
from pipeline.runners import shm_transport
from pipeline.runners.base import OnOutcome, OnSamples, TeacherLoadError, load_configured_teacher, teacher_load_error
from pipeline.stages.inputs import shard_id
from pipeline.stages.prepare import PreparedShard, ShardPreparer, TeacherBatch
from pipeline.stages.write import apply_detections, write_shard
from schemas.errors import describe_error
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
        preparer, broken = None, f"the CPU worker could not start ({describe_error(exc)})"
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
                    item = shm_transport.pack(item, shm_prefix)
                results.put(("item", url, item))
        except Exception as exc:  # noqa: BLE001 - reported per shard by the consumer
            log.debug("shard %s failed", url, exc_info=True)
            results.put(("error", url, describe_error(exc)))


def _prepare_in_thread(config: LabelConfig, urls: list[str], results: "queue.Queue") -> None:
    preparer = ShardPreparer(config)
    for url in urls:
        try:
            for item in preparer.prepare(url):
                results.put(("item", url, item))
        except Exception as exc:  # noqa: BLE001
            results.put(("error", url, describe_error(exc)))
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


class InProcessRunner:
    """Label `plan.todo` with the teacher in this process.

    `teacher` defaults to the one the config names (loaded here); `cpu_workers` defaults to the
    config's, else the cores but one; 0 prepares in a thread of this process. `transport` is how
    worker processes hand batches over: "shm", "pipe", or "auto" (shared memory when /dev/shm can
    hold the batches in flight).

    The teacher is called from `teacher.concurrent_calls` threads (default 1), so that a GPU
    teacher's host work for one batch overlaps its forward on another.

    After `run`, `stats` holds `teacher_images`, `first_batch_at` and `last_batch_done_at`
    (perf_counter times: the steady state lies between them), `teacher_seconds` (time with a
    teacher call in flight), `wait_seconds` (time in the steady state with none: the teacher
    waited for batches) and `transport`.
    """

    def __init__(self, plan: RunPlan, teacher: Teacher | None = None, *, cpu_workers: int | None = None,
                 queue_batches: int = 8, transport: str = "auto") -> None:
        cfg = plan.config
        self.plan = plan
        self.teacher = teacher if teacher is not None else _load_teacher(cfg)
        if cpu_workers is None:
            cpu_workers = cfg.resources.cpu_workers if cfg.resources.cpu_workers is not None else max(1, len(os.sched_getaffinity(0)) - 1)
        self.cpu_workers = cpu_workers
        self.queue_batches = queue_batches
        self.callers = concurrent_calls(self.teacher)
        self.shm_prefix = (_shared_memory_prefix(cfg, transport, cpu_workers, queue_batches, self.callers)
                           if cpu_workers > 0 else None)
        self.commit = plan.commit(getattr(self.teacher, "teacher_id", cfg.labels.teacher), getattr(self.teacher, "revision", None))
        self.stats: dict = {"transport": ("shm" if self.shm_prefix else "pipe")} if cpu_workers > 0 else {}
        self.outcomes: list[ShardOutcome] = []
        self._reporting = threading.Lock()
        self._on_outcome: OnOutcome = lambda o: None
        self._pending: dict[str, list[tuple[list[int], list]]] = {}
        self._teacher_seconds: dict[str, float] = {}
        self._labels: dict[str, list[Future]] = {}
        self._free_callers = threading.Semaphore(self.callers)
        self._busy = _BusyClock()
        self._procs: list[mp.Process] = []

    def run(self, on_samples: OnSamples = lambda n: None, on_outcome: OnOutcome = lambda o: None) -> list[ShardOutcome]:
        self._on_outcome = on_outcome
        results, producers = self._start_preparing()
        writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shard-writer")
        labeller = ThreadPoolExecutor(max_workers=self.callers, thread_name_prefix="teacher-call")
        finished = 0
        completed = False
        try:
            while finished < producers:
                try:
                    kind, url, item = results.get(timeout=5.0)
                except queue.Empty:
                    if self._workers_broke():
                        break
                    continue
                if kind == _DONE:
                    finished += 1
                elif kind == "error":
                    self._fail_shard(url, item)
                elif isinstance(item, (shm_transport.SharedBatch, TeacherBatch)):
                    self._free_callers.acquire()
                    self._labels.setdefault(url, []).append(labeller.submit(self._label, url, item))
                elif isinstance(item, PreparedShard):
                    on_samples(len(item.rows))
                    writer.submit(self._write, item)
            completed = finished >= producers
        finally:
            died = self._stop_workers(completed, labeller)
        writer.shutdown(wait=True)
        for p in self._procs:
            p.join(timeout=5)
        reason = (f"a CPU worker process died (exit code {', '.join(map(str, died))}) and the run stopped before it was done" if died
                  else "the run ended before it was prepared")
        for url in missing_shards(self.plan, self.outcomes):
            self._report(ShardOutcome(shard_id(url), error=f"shard {shard_id(url)} ({url}) was not labelled: {reason}"))
        return self.outcomes

    def placement(self) -> dict:
        """Everything ran on this machine: nothing to add to the run record."""
        return {}

    def _start_preparing(self) -> tuple["queue.Queue", int]:
        """Start the CPU side; returns the queue of its messages and how many producers end it."""
        cfg = self.plan.config
        if self.cpu_workers == 0:
            results: queue.Queue = queue.Queue(maxsize=self.queue_batches)
            threading.Thread(target=_prepare_in_thread, args=(cfg, list(self.plan.todo), results), daemon=True).start()
            return results, 1
        ctx = mp.get_context("spawn")
        # Held by the runner: a queue collected here would take its semaphores with it before the
        # spawned workers have opened them.
        self._queues = tasks, worker_results = ctx.Queue(), ctx.Queue(maxsize=self.queue_batches)
        for url in self.plan.todo:
            tasks.put(url)
        for _ in range(self.cpu_workers):
            tasks.put(None)
        self._procs = [ctx.Process(target=_prepare_worker, args=(cfg, tasks, worker_results, self.shm_prefix), daemon=True)
                       for _ in range(self.cpu_workers)]
        for p in self._procs:
            p.start()
        return _forwarded(worker_results, self.queue_batches, self.cpu_workers, self._procs), self.cpu_workers

    def _workers_broke(self) -> bool:
        """A worker died, perhaps in the middle of writing a message into the queue the workers
        share, which can leave the receiver waiting for its rest for ever; or none is alive. The
        shards not yet written are then reported as not labelled."""
        procs = self._procs
        return bool(procs) and (any(p.exitcode not in (None, 0) for p in procs) or not any(p.is_alive() for p in procs))

    def _stop_workers(self, completed: bool, labeller: ThreadPoolExecutor) -> list[int]:
        died = sorted({p.exitcode for p in self._procs if p.exitcode not in (0, None)})
        if not completed:  # interrupted, or a worker died: stop the workers before their batches are cleaned up
            for p in self._procs:
                p.terminate()
            for p in self._procs:
                p.join(timeout=5)
        labeller.shutdown(wait=True)
        self._busy.report(self.stats)
        if self.shm_prefix and (left := shm_transport.remove_segments(self.shm_prefix)):
            log.warning("removed %d shared-memory batch(es) that no teacher call released", left)
        return died

    def _report(self, outcome: ShardOutcome) -> None:
        with self._reporting:
            self.outcomes.append(outcome)
            self._on_outcome(outcome)

    def _fail_shard(self, url: str, why: str) -> None:
        for fut in self._labels.pop(url, []):
            fut.exception()
        self._pending.pop(url, None)
        self._teacher_seconds.pop(url, None)
        self._report(ShardOutcome(shard_id(url), error=f"shard {shard_id(url)} ({url}) failed: {why}"))

    def _write(self, prepared: PreparedShard) -> None:
        """Label results into the shard's rows, publish it, and report it at once (so that an
        interrupted run still counts the shards it published)."""
        try:
            for fut in self._labels.pop(prepared.url, []):
                fut.result()
            for rows, dets in self._pending.pop(prepared.url, []):
                apply_detections(prepared, rows, dets)
            manifest = write_shard(prepared, self.commit, {"teacher": self._teacher_seconds.pop(prepared.url, 0.0)})
            outcome = ShardOutcome(prepared.shard, manifest=manifest)
        except Exception as exc:  # noqa: BLE001
            outcome = ShardOutcome(prepared.shard, error=f"shard {prepared.shard}: labelling or writing failed: {describe_error(exc)}")
        self._report(outcome)

    def _label(self, url: str, item: TeacherBatch | shm_transport.SharedBatch) -> None:
        opened = None
        try:
            if isinstance(item, shm_transport.SharedBatch):
                opened = shm_transport.OpenedBatch(item)
            batch = opened.batch if opened else item
            t0 = self._busy.start()
            try:
                dets = predict_resilient(self.teacher, batch.requests, max_tries=self.plan.config.policy.teacher_tries)
            finally:
                seconds = self._busy.stop() - t0
            with self._busy.lock:
                self.stats["teacher_images"] = self.stats.get("teacher_images", 0) + len(batch.requests)
                self._teacher_seconds[url] = self._teacher_seconds.get(url, 0.0) + seconds
                self._pending.setdefault(url, []).append((batch.rows, dets))
        finally:
            if opened:
                opened.release()
            self._free_callers.release()


def _load_teacher(cfg: LabelConfig) -> Teacher:
    if (cfg.resources.device or "").startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise TeacherLoadError(f"--device {cfg.resources.device} but torch sees no CUDA GPU on this machine; use --device cpu, "
                                   "or leave --device unset to use the GPU when there is one")
    try:
        return load_configured_teacher(cfg)
    except Exception as exc:  # noqa: BLE001 - one sentence for the user, not a traceback
        raise teacher_load_error(cfg, exc) from exc


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
    if stale := shm_transport.remove_stale_segments():
        log.warning("removed %d shared-memory batch(es) left in %s by a run that was killed", stale, shm_transport.SHM_DIR)
    # Largest teacher input: shortest side min_size, longest at most max_size. Batches in
    # flight: the workers' queue and the receiver's (queue_batches each), one per worker waiting
    # to put, one in the receiver, one waiting for a free teacher caller, one per caller.
    batch_bytes = cfg.resources.batch_size * cfg.labels.min_size * cfg.labels.max_size * 3
    need = (2 * queue_batches + cpu_workers + 2 + callers) * batch_bytes
    free = shm_transport.shm_free_bytes()
    if transport == "shm" and free < need:
        raise ValueError(
            f"transport shm: {shm_transport.SHM_DIR} has {free / 2**20:.0f} MB free but batches in flight may need "
            f"{need / 2**20:.0f} MB (a worker writing into a full {shm_transport.SHM_DIR} is killed); "
            "use transport auto or pipe, or give the machine more shared memory"
        )
    if transport == "auto" and free < need:
        log.warning(
            "%s has %.0f MB free but batches in flight may need %.0f MB: sending batches through pipes, "
            "which is slower; give the machine or container more shared memory (e.g. docker run --shm-size)",
            shm_transport.SHM_DIR, free / 2**20, need / 2**20,
        )
        return None
    return shm_transport.new_run_prefix()
