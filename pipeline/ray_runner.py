"""The Ray topology: CPU actors prepare and write shards, GPU actors run the teacher.

The driver never touches image data: batches go from a CPU actor's streaming generator to a
teacher actor as object refs, and the teacher results go to the writer as refs. Actors load
their heavy state (spaCy, the model) once and restart if their process dies; a teacher task
whose actor died is retried on the restarted actor, and a shard whose preparation or writing
failed is redone from scratch (its outputs are only published at the end, atomically).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable

import ray
from ray.exceptions import RayError, RayTaskError

from pipeline.config import ConfigError, LabelConfig
from pipeline.run import RunPlan, ShardOutcome
from pipeline.shards import shard_id

log = logging.getLogger(__name__)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@ray.remote(max_restarts=-1, max_task_retries=0)
class PrepareActor:
    def __init__(self, config: LabelConfig) -> None:
        from pipeline.prepare import ShardPreparer

        self.preparer = ShardPreparer(config)

    def pid(self) -> int:
        return os.getpid()

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()

    def prepare(self, url: str):
        yield from self.preparer.prepare(url)

    def write(self, prepared, *results, meta: dict):
        from pipeline.writer import apply_detections, write_shard

        teacher_seconds = 0.0
        for rows, dets, seconds in results:
            apply_detections(prepared, rows, dets)
            teacher_seconds += seconds
        return write_shard(prepared, timings={"teacher": teacher_seconds}, **meta)


@ray.remote(max_restarts=-1, max_task_retries=3)
class TeacherActor:
    def __init__(self, config: LabelConfig, cpu_threads: int | None = None) -> None:
        from teacher.load import load_teacher
        from teacher.protocol import concurrent_calls

        self.config = config
        if cpu_threads:
            import torch

            torch.set_num_threads(min(cpu_threads, len(os.sched_getaffinity(0))))
        self.teacher = load_teacher(
            config.teacher, config.grounding_settings(), device=config.device,
            allow_pickle=config.allow_pickle_checkpoint, fast=config.fast_teacher, precision=config.precision,
        )
        # A threaded actor (GPU) runs as many predict calls at once as the teacher allows.
        self.calls = threading.Semaphore(concurrent_calls(self.teacher))

    def pid(self) -> int:
        return os.getpid()

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()

    def info(self) -> dict:
        import torch

        return {"teacher_id": self.teacher.teacher_id, "revision": self.teacher.revision, "device": self.teacher.device,
                "cpu_threads": torch.get_num_threads()}

    def predict(self, batch):
        import time

        from teacher.resilient import predict_resilient

        with self.calls:
            t0 = time.perf_counter()
            dets = predict_resilient(self.teacher, batch.requests, max_tries=self.config.teacher_tries)
            return batch.rows, dets, time.perf_counter() - t0


def teacher_actor_options(cfg: LabelConfig, teachers: int, use_gpu: bool) -> tuple[dict, int | None]:
    """Ray options and torch CPU threads of a teacher actor.

    On a GPU the actor needs one CPU and Ray's one thread, and runs two predict calls at once so
    that one batch's host work overlaps the other's forward (the teacher serialises the device
    pass). On the CPU the teacher is the bottleneck while the CPU actors mostly wait on it, so it
    gets the node's cores (shared by its teachers) instead of Ray's one thread; passive OpenMP
    waiting makes those threads yield when a CPU actor needs a core, where spinning threads would
    stall every parallel region.
    """
    if use_gpu:
        return {"num_gpus": 1, "num_cpus": 1, "max_concurrency": 2}, None
    threads = cfg.teacher_threads or max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, teachers))
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    return {"num_cpus": 1, "runtime_env": {"env_vars": env}}, threads


def default_workers(cfg: LabelConfig) -> tuple[int, int, bool]:
    """(teacher actors, CPU actors, use GPUs) from flags or the cluster's resources."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    if gpus == 0 and (cfg.device or "").startswith("cuda"):
        raise ConfigError(f"--device {cfg.device} but the Ray cluster has no GPUs; use --device cpu, "
                         "or leave --device unset to use GPUs where the cluster has them")
    use_gpu = gpus > 0 and cfg.device != "cpu"
    teachers = cfg.gpu_workers if cfg.gpu_workers else (gpus if use_gpu else 1)
    spare = cpus - (0 if use_gpu else teachers)
    cpu_workers = cfg.cpu_workers if cfg.cpu_workers else max(1, spare)
    return teachers, cpu_workers, use_gpu


class RayRunner:
    def __init__(self, plan: RunPlan) -> None:
        cfg = plan.config
        self.plan = plan
        n_teachers, n_cpu, use_gpu = default_workers(cfg)
        teacher_opts, threads = teacher_actor_options(cfg, n_teachers, use_gpu)
        self.teachers = [TeacherActor.options(**teacher_opts).remote(cfg, threads) for _ in range(n_teachers)]
        self.preparers = [PrepareActor.options(num_cpus=1).remote(cfg) for _ in range(n_cpu)]
        self._next_teacher = itertools.cycle(range(len(self.teachers)))
        self._next_preparer = itertools.cycle(range(len(self.preparers)))
        self._lock = threading.Lock()
        self._stopping = False
        self.info = ray.get(self.teachers[0].info.remote())
        self.max_outstanding = max(2, 2 * len(self.teachers))
        pids = ray.get([a.pid.remote() for a in self.teachers]), ray.get([a.pid.remote() for a in self.preparers])
        log.info("ray pipeline: %d teacher actor(s) on %s (pids %s, %d CPU threads each), %d CPU actor(s) (pids %s)",
                 n_teachers, "GPU" if use_gpu else "CPU", pids[0], self.info["cpu_threads"], n_cpu, pids[1])

    def _pick(self, which: str):
        with self._lock:
            if which == "teacher":
                return self.teachers[next(self._next_teacher)]
            return self.preparers[next(self._next_preparer)]

    def _label_once(self, url: str) -> ShardOutcome:
        cfg = self.plan.config
        preparer = self._pick("preparer")
        gen = preparer.prepare.options(num_returns="streaming").remote(url)
        previous = None
        results = []
        for ref in gen:
            if previous is not None:
                if len(results) >= self.max_outstanding:
                    ray.wait(results, num_returns=len(results) - self.max_outstanding + 1)
                results.append(self._pick("teacher").predict.remote(previous))
            previous = ref
        if previous is None:
            raise RuntimeError(f"shard {url} produced nothing")
        meta = dict(
            output=cfg.output, config_hash=self.plan.config_hash, settings=self.plan.settings,
            teacher_id=self.info["teacher_id"], teacher_revision=cfg.teacher_revision or self.info["revision"],
            run_id=self.plan.run_id,
        )
        manifest = ray.get(self._pick("preparer").write.remote(previous, *results, meta=meta))
        return ShardOutcome(manifest.shard, manifest=manifest)

    def label_shard(self, url: str) -> ShardOutcome:
        sid = shard_id(url)
        last = ""
        for attempt in range(self.plan.config.shard_retries + 1):
            try:
                return self._label_once(url)
            except (RayError, OSError, RuntimeError, ValueError) as exc:
                if self._stopping:
                    return ShardOutcome(sid, error=f"shard {sid} ({url}) was stopped: the run was interrupted")
                last = _describe(exc)
                if isinstance(exc, PERMANENT_ERRORS):  # a retry would meet the same folder or refusal
                    break
                log.warning("shard %s attempt %d failed: %s", sid, attempt + 1, last)
                self._wait_for_actors()
        return ShardOutcome(sid, error=f"shard {sid} ({url}) failed after {attempt + 1} attempt(s): {last}")

    def _wait_for_actors(self, timeout: float = 300.0) -> None:
        """After a failure, wait until restarting actors answer again, so the retry does not
        fail at once on an actor that is still loading its model."""
        import time

        deadline = time.monotonic() + timeout
        for actor in self.preparers + self.teachers:
            while time.monotonic() < deadline:
                try:
                    ray.get(actor.pid.remote(), timeout=max(1.0, deadline - time.monotonic()))
                    break
                except RayError:
                    time.sleep(1.0)

    def run(
        self,
        on_samples: Callable[[int], None] = lambda n: None,
        on_outcome: Callable[[ShardOutcome], None] = lambda o: None,
    ) -> list[ShardOutcome]:
        cfg = self.plan.config
        in_flight = cfg.shards_in_flight or max(2, len(self.preparers) + len(self.teachers))
        outcomes = []
        pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="shard")
        try:
            futures = [pool.submit(self.label_shard, url) for url in self.plan.todo]
            for fut in as_completed(futures):
                outcome = fut.result()
                outcomes.append(outcome)
                if outcome.manifest:
                    on_samples(outcome.manifest.samples)
                on_outcome(outcome)
        except BaseException:  # Ctrl-C above all: drop queued shards, end the ones in flight now
            self.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        return outcomes

    def stop(self) -> None:
        """Kill the actors, so shards in flight fail at once instead of running to their end;
        their outputs are never published half-written (each shard publishes atomically)."""
        self._stopping = True
        for actor in self.teachers + self.preparers:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


# Errors that retrying a shard cannot fix. Ray re-raises an actor's exception as an instance of
# its original class too, so these match errors raised inside the actors.
PERMANENT_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        exc = exc.cause  # the actor's own exception, not Ray's wrapper and its traceback text
    text = str(exc).strip().splitlines()
    cause = next((line for line in reversed(text) if line.strip()), "")
    return f"{exc.__class__.__name__}: {cause}".rstrip(": ")[:500]
