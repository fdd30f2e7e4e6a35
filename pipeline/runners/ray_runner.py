"""The Ray runner: CPU actors prepare and write shards, teacher actors run the model, the driver
schedules shards and never waits without a bound.

The driver never touches image data: batches go from a CPU actor's streaming generator to a
teacher actor as object refs, and the teacher results go to the writer as refs. Actors live in
pools (`ray_pool.ActorPool`) that route work only to members that answer, give up members whose
node is gone, and grow back when nodes return or join. A shard is redone from scratch when any
step fails: its outputs are only published at the end, atomically.

Two kinds of failure, two budgets: a shard's own error (its input is unreadable, writing failed)
uses one of its `shard_retries`; a lost actor or object (a process or node died) does not, and is
retried after the next health check, up to `INFRA_TRIES` times, so that a lost node never uses up
the attempts of the shards it held.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

import ray
from ray.exceptions import (
    GetTimeoutError,
    NodeDiedError,
    ObjectLostError,
    RayActorError,
    RaySystemError,
    RayTaskError,
    WorkerCrashedError,
)

from pipeline.config import ConfigError
from pipeline.plan import RunPlan, ShardOutcome
from pipeline.runners.base import OnOutcome, OnSamples, TeacherLoadError, teacher_load_error
from pipeline.runners.ray_actors import ClusterSizing, PrepareActor, TeacherActor, teacher_actor_options
from pipeline.runners.ray_nodes import NodeWatch
from pipeline.runners.ray_pool import ActorPool, ActorStartError, Member, NoActorsError
from pipeline.stages.inputs import shard_id
from schemas.errors import describe_error

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]

MAINTAIN_EVERY_S = 5.0  # health checks of the actor pools
REPLACE_AFTER_S = 20.0  # an actor silent this long (not just restarting in place) gets a replacement
GIVE_UP_AFTER_S = 60.0  # an actor silent this long (its node is likely gone) is killed for good
STEP_TIMEOUT_S = 900.0  # the longest the driver waits for one batch, teacher call or write
INFRA_TRIES = 6  # lost actors or objects a shard may meet before it is failed
GENERATOR_AHEAD = 2  # batches a CPU actor may prepare before the driver takes them
PER_TEACHER_QUEUE = 3  # teacher calls in flight per available teacher, over all shards (two run, one waits)
PLACEMENT_WAIT_S = 60.0  # at the start, how long to wait for every actor to be placed (then they join as they are)
# Errors that retrying a shard cannot fix. Ray re-raises an actor's exception as an instance of
# its original class too, so these match errors raised inside the actors.
PERMANENT_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
# A process, node or object was lost: nothing wrong with the shard.
INFRA_ERRORS = (RayActorError, ObjectLostError, WorkerCrashedError, NodeDiedError, RaySystemError, GetTimeoutError)


def connect(address: str | None) -> None:
    """Join the cluster at `address`, or the one the job was submitted to (RAY_ADDRESS), else start
    a local Ray whose workers import this checkout's packages even when it is not installed."""
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:
        ray.init(runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}}, log_to_driver=True)


class ActorLost(RuntimeError):
    """A step of a shard failed because an actor, its process, node or objects were lost."""


class RayRunner:
    def __init__(self, plan: RunPlan, *, address: str | None = None, make_teacher: Callable | None = None) -> None:
        """Start the pools; the teachers are placed first (so CPU actors do not take the CPUs of
        their nodes) and one must answer, else TeacherLoadError. `make_teacher` replaces the
        configured teacher (benchmarks' stand-ins)."""
        cfg = plan.config
        self.plan = plan
        connect(address)
        try:
            self.sizing = ClusterSizing(cfg)
        except ConfigError as exc:  # a flag the cluster cannot serve
            raise TeacherLoadError(str(exc)) from exc
        teacher_opts, threads = teacher_actor_options(cfg, self.sizing)
        timing = dict(node_wait=cfg.policy.node_wait, give_up_after=min(GIVE_UP_AFTER_S, cfg.policy.node_wait),
                      replace_after=min(REPLACE_AFTER_S, cfg.policy.node_wait))
        self.teachers = ActorPool("teacher", lambda: TeacherActor.options(**teacher_opts).remote(cfg, threads, make_teacher),
                                  self.sizing.teachers, **timing)
        self.preparers = ActorPool("cpu", lambda: PrepareActor.options(num_cpus=1).remote(cfg), self.sizing.cpu_actors, **timing)
        self.nodes = NodeWatch()
        self.queue = TeacherQueue(lambda: PER_TEACHER_QUEUE * max(1, sum(m.available for m in self.teachers.members)))
        self._stopping = threading.Event()
        self._maintained = threading.Condition()
        self._passes = 0
        try:
            self.teachers.wait_until_available()
            self.info = ray.get(self.teachers.pick().handle.info.remote(), timeout=STEP_TIMEOUT_S)
            self.preparers.wait_until_available()
        except ActorStartError as exc:  # the actor's own error (a bad checkpoint), as one sentence
            self.stop()
            raise teacher_load_error(cfg, exc.__cause__ or exc) from exc
        except (NoActorsError, RayActorError, GetTimeoutError) as exc:
            self.stop()
            raise TeacherLoadError(f"cannot start the Ray actors: {describe_error(exc)}") from exc
        self._settle(PLACEMENT_WAIT_S)
        log.info("ray pipeline: %d teacher actor(s) on %s (pids %s, %d CPU threads each), %d CPU actor(s) (pids %s), "
                 "on %d node(s)", len(self.teachers.members), self.sizing.teacher_resource or "CPU", self.teachers.pids(),
                 self.info["cpu_threads"], len(self.preparers.members), self.preparers.pids(), len(self.nodes.seen))

    def _settle(self, timeout: float) -> None:
        """Health checks until every actor answered (they are placed and loaded), or `timeout`."""
        deadline = time.monotonic() + timeout
        while not (self.teachers.settled() and self.preparers.settled()) and time.monotonic() < deadline:
            time.sleep(0.5)
            self.maintain()

    def run(self, on_samples: OnSamples = lambda n: None, on_outcome: OnOutcome = lambda o: None) -> list[ShardOutcome]:
        in_flight = self.plan.config.resources.shards_in_flight or max(2, len(self.preparers.members) + len(self.teachers.members))
        maintainer = threading.Thread(target=self._maintain_loop, name="actor-pools", daemon=True)
        maintainer.start()
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
        self._stopping.set()
        return outcomes

    def label_shard(self, url: str) -> ShardOutcome:
        sid = shard_id(url)
        own = lost = 0
        retried: list[str] = []
        while True:
            try:
                return ShardOutcome(sid, manifest=self._label_once(url), retried=retried)
            except NoActorsError as exc:
                if self._stopping.is_set():
                    return ShardOutcome(sid, error=f"shard {sid} ({url}) was stopped: the run was interrupted")
                return ShardOutcome(sid, error=f"shard {sid} ({url}) was not labelled: {exc}; when such a node is back, "
                                    "the same command labels the rest", retried=retried)
            except Exception as exc:  # noqa: BLE001 - classified below; the shard is redone or failed
                if self._stopping.is_set():
                    return ShardOutcome(sid, error=f"shard {sid} ({url}) was stopped: the run was interrupted")
                why = str(exc) if isinstance(exc, ActorLost) else describe_error(_actor_cause(exc), last_line=True)
                if isinstance(exc, ActorLost) or _is_infra(exc):
                    lost += 1
                    retried.append(f"actor or object lost: {why}")
                    if lost >= INFRA_TRIES:
                        return ShardOutcome(sid, error=f"shard {sid} ({url}) failed: {lost} actors or objects were lost "
                                            f"while it ran, the last: {why}", retried=retried)
                    self._await_health_check()
                    continue
                own += 1
                if isinstance(_actor_cause(exc), PERMANENT_ERRORS) or own > self.plan.config.policy.shard_retries:
                    return ShardOutcome(sid, error=f"shard {sid} ({url}) failed after {own} attempt(s): {why}", retried=retried)
                retried.append(why)
                log.warning("shard %s attempt %d failed: %s", sid, own, why)

    def _label_once(self, url: str):
        """Prepare the shard on a CPU actor, send its batches to the teachers, write it on a CPU
        actor. The CPU actor runs at most GENERATOR_AHEAD batches ahead of the driver, and the
        teachers' queue is bounded for the whole run (`TeacherQueue`): object-store use stays
        bounded, however many shards are in flight."""
        preparer = self.preparers.pick()
        stream = preparer.handle.prepare.options(num_returns="streaming",
                                                 _generator_backpressure_num_objects=GENERATOR_AHEAD).remote(url)
        previous = None
        calls: list[Any] = []
        with self.queue.slots() as mine:
            for ref in self._stream(stream, preparer):
                if previous is not None:
                    mine.acquire()
                    teacher = self.teachers.pick()
                    calls.append(self._call(teacher, teacher.handle.predict, previous))
                    mine.track(calls[-1])
                previous = ref
        if previous is None:
            raise RuntimeError(f"shard {url} produced nothing")
        writer = self.preparers.pick()
        commit = self.plan.commit(self.info["teacher_id"], self.info["revision"])
        return self._get(writer, self._call(writer, writer.handle.write, previous, *calls, commit=commit))

    def _stream(self, stream, member: Member):
        """The refs a CPU actor's streaming generator yields, each waited for at most STEP_TIMEOUT_S."""
        while True:
            try:
                ref = stream._next_sync(timeout_s=STEP_TIMEOUT_S)
            except StopIteration:
                return
            except INFRA_ERRORS as exc:
                self._lost(member, exc)
            if ref.is_nil():
                self._lost(member, GetTimeoutError(f"no batch from the CPU actor in {STEP_TIMEOUT_S:.0f}s"))
            yield ref

    def _call(self, member: Member, method, *args, **kwargs):
        try:
            return method.remote(*args, **kwargs)
        except INFRA_ERRORS as exc:
            self._lost(member, exc)

    def _get(self, member: Member, ref):
        try:
            return ray.get(ref, timeout=STEP_TIMEOUT_S)
        except RayActorError as exc:
            self._lost(member, exc)

    def _lost(self, member: Member, exc: BaseException):
        pool = self.teachers if member.kind == "teacher" else self.preparers
        pool.mark_failed(member)
        raise ActorLost(describe_error(exc, last_line=True)) from exc

    def _maintain_loop(self) -> None:
        while not self._stopping.wait(MAINTAIN_EVERY_S):
            self.maintain()

    def maintain(self) -> None:
        """One health check of both pools and of the nodes; wakes the shards waiting for it."""
        try:
            self.teachers.maintain()
            self.preparers.maintain()
            self.nodes.update(suspects=self.teachers.silent_nodes() | self.preparers.silent_nodes())
            for pool in (self.teachers, self.preparers):
                pool.give_up_on_nodes(self.nodes.lost)
        except Exception:  # noqa: BLE001 - a failed check is retried at the next pass
            log.warning("checking the actors failed", exc_info=True)
        with self._maintained:
            self._passes += 1
            self._maintained.notify_all()

    def _await_health_check(self) -> None:
        """Before a retry, wait for a health check that began after the failure (it marks the
        lost actors unavailable, so the retry goes to one that answers)."""
        with self._maintained:
            target = self._passes + 2
            self._maintained.wait_for(lambda: self._passes >= target or self._stopping.is_set(),
                                      timeout=4 * MAINTAIN_EVERY_S + 30)

    def placement(self) -> dict[str, Any]:
        """Which node ran which actor, and the nodes lost during the run (for the run record)."""
        return {"workers": self.teachers.describe() + self.preparers.describe(), "nodes_lost": self.nodes.lost_names()}

    def stop(self) -> None:
        """Kill the actors, so shards in flight fail at once instead of running to their end;
        their outputs are never published half-written (each shard publishes atomically)."""
        self._stopping.set()
        self.teachers.kill_all()
        self.preparers.kill_all()


class TeacherQueue:
    """A bound on the teacher calls in flight over all shards (each holds its batch in the object
    store), which follows the number of available teachers."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self.limit = limit
        self.used = 0
        self._changed = threading.Condition()

    def slots(self) -> "ShardSlots":
        return ShardSlots(self)

    def take(self, timeout: float) -> bool:
        with self._changed:
            if self.used >= self.limit():
                self._changed.wait(timeout)
            if self.used < self.limit():
                self.used += 1
                return True
            return False

    def give_back(self, n: int) -> None:
        if n:
            with self._changed:
                self.used -= n
                self._changed.notify_all()


class ShardSlots:
    """One shard's share of the teacher queue: the slots it holds, given back as its calls finish
    and, all the rest, when the shard is done with the queue (its write awaits what is left)."""

    def __init__(self, queue: TeacherQueue) -> None:
        self.queue, self.pending, self.held = queue, [], 0

    def __enter__(self) -> "ShardSlots":
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.give_back(self.held)
        self.pending, self.held = [], 0

    def track(self, ref: Any) -> None:
        self.pending.append(ref)

    def acquire(self) -> None:
        """Wait for a slot, giving back this shard's finished calls meanwhile (they may be the
        ones the queue is waiting for); bounded by STEP_TIMEOUT_S."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            if self.pending:
                done, self.pending = ray.wait(self.pending, num_returns=len(self.pending), timeout=0, fetch_local=False)
                self.queue.give_back(len(done))
                self.held -= len(done)
            if self.queue.take(timeout=0 if self.pending else 0.5):
                self.held += 1
                return
            if time.monotonic() > deadline:
                raise GetTimeoutError(f"no teacher took a batch in {STEP_TIMEOUT_S:.0f}s")
            if self.pending:  # wake as soon as one of this shard's calls finishes
                ray.wait(self.pending, num_returns=1, timeout=0.5, fetch_local=False)


def _is_infra(exc: BaseException) -> bool:
    return isinstance(exc, INFRA_ERRORS) or isinstance(_actor_cause(exc), INFRA_ERRORS)


def _actor_cause(exc: BaseException) -> BaseException:
    """The actor's own exception, not Ray's wrapper with its traceback text."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        return exc.cause
    return exc
