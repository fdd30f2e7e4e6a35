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
from pathlib import Path

import ray
from ray.exceptions import RayError, RayTaskError

from pipeline.config import ConfigError
from pipeline.errors import describe_error
from pipeline.plan import RunPlan, ShardOutcome
from pipeline.runners.base import OnOutcome, OnSamples, TeacherLoadError, teacher_load_error
from pipeline.runners.ray_actors import PrepareActor, TeacherActor, default_workers, teacher_actor_options
from pipeline.stages.inputs import shard_id

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or the one the job was submitted to (RAY_ADDRESS), else start
    a local Ray whose workers import this checkout's packages even when it is not installed."""
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:
        ray.init(runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}}, log_to_driver=True)


class RayRunner:
    def __init__(self, plan: RunPlan, *, address: str | None = None) -> None:
        cfg = plan.config
        self.plan = plan
        connect(address)
        try:
            n_teachers, n_cpu, use_gpu = default_workers(cfg)
        except ConfigError as exc:  # a flag the cluster cannot serve
            raise TeacherLoadError(str(exc)) from exc
        teacher_opts, threads = teacher_actor_options(cfg, n_teachers, use_gpu)
        self.teachers = [TeacherActor.options(**teacher_opts).remote(cfg, threads) for _ in range(n_teachers)]
        self.preparers = [PrepareActor.options(num_cpus=1).remote(cfg) for _ in range(n_cpu)]
        self._next_teacher = itertools.cycle(range(len(self.teachers)))
        self._next_preparer = itertools.cycle(range(len(self.preparers)))
        self._lock = threading.Lock()
        self._stopping = False
        try:
            self.info = ray.get(self.teachers[0].info.remote())
        except Exception as exc:  # noqa: BLE001 - the actor's load error, as one sentence
            self.stop()
            raise teacher_load_error(cfg, _actor_cause(exc)) from exc
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
        commit = self.plan.commit(self.info["teacher_id"], self.info["revision"])
        manifest = ray.get(self._pick("preparer").write.remote(previous, *results, commit=commit))
        return ShardOutcome(manifest.shard, manifest=manifest)

    def label_shard(self, url: str) -> ShardOutcome:
        sid = shard_id(url)
        last = ""
        for attempt in range(self.plan.config.policy.shard_retries + 1):
            try:
                return self._label_once(url)
            except (RayError, OSError, RuntimeError, ValueError) as exc:
                if self._stopping:
                    return ShardOutcome(sid, error=f"shard {sid} ({url}) was stopped: the run was interrupted")
                last = describe_error(_actor_cause(exc), last_line=True)
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

    def run(self, on_samples: OnSamples = lambda n: None, on_outcome: OnOutcome = lambda o: None) -> list[ShardOutcome]:
        in_flight = self.plan.config.resources.shards_in_flight or max(2, len(self.preparers) + len(self.teachers))
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


def _actor_cause(exc: BaseException) -> BaseException:
    """The actor's own exception, not Ray's wrapper with its traceback text."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        return exc.cause
    return exc
