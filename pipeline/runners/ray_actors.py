"""The Ray actors: CPU actors that prepare and write shards, teacher actors that run the model.

Each loads its heavy state once (spaCy and the image decoder; the teacher) and is restarted by
Ray if its process dies. How many of each, and on what resources, is decided here from the
flags and the cluster's current resources (`ClusterSizing`, `teacher_actor_options`): teachers
ask for a GPU (or the resource `--teacher-resource` names) and one CPU, CPU actors for one CPU,
so on a cluster of GPU and CPU nodes the teachers sit on the GPU nodes and the CPU actors fill
every node's spare CPUs.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import ray

from pipeline.config import ConfigError, LabelConfig


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@ray.remote(max_restarts=-1, max_task_retries=0)
class PrepareActor:
    def __init__(self, config: LabelConfig) -> None:
        from pipeline.stages.prepare import ShardPreparer

        self.preparer = ShardPreparer(config)

    def where(self) -> dict[str, Any]:
        """The node and process this actor runs in (its health check, too)."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                "pid": os.getpid()}

    def peak_rss_mb(self) -> float:
        return peak_rss_mb()

    def prepare(self, url: str):
        yield from self.preparer.prepare(url)

    def write(self, prepared, *results, commit):
        from pipeline.stages.write import apply_detections, write_shard

        teacher_seconds = 0.0
        for rows, dets, seconds in results:
            apply_detections(prepared, rows, dets)
            teacher_seconds += seconds
        return write_shard(prepared, commit, {"teacher": teacher_seconds})


@ray.remote(max_restarts=-1, max_task_retries=3)
class TeacherActor:
    def __init__(self, config: LabelConfig, cpu_threads: int | None = None, make_teacher: Callable | None = None) -> None:
        """`make_teacher` (for benchmarks: a stand-in without a model) replaces the configured one."""
        from pipeline.runners.base import load_configured_teacher
        from teacher.protocol import concurrent_calls

        self.config = config
        if cpu_threads:
            import torch

            torch.set_num_threads(min(cpu_threads, len(os.sched_getaffinity(0))))
        self.teacher = make_teacher() if make_teacher else load_configured_teacher(config)
        # A threaded actor (GPU) runs as many predict calls at once as the teacher allows.
        self.calls = threading.Semaphore(concurrent_calls(self.teacher))

    def where(self) -> dict[str, Any]:
        """The node and process this actor runs in (its health check, too)."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                "pid": os.getpid()}

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
            dets = predict_resilient(self.teacher, batch.requests, max_tries=self.config.policy.teacher_tries)
            return batch.rows, dets, time.perf_counter() - t0


class ClusterSizing:
    """How many actors of each kind, and the teachers' Ray options, from the flags and the
    cluster's resources now (nodes come and go: the pools ask again at every maintenance pass)."""

    def __init__(self, cfg: LabelConfig) -> None:
        res = cfg.resources
        self.cfg = cfg
        resources = ray.cluster_resources()
        if res.teacher_resource:
            self.teacher_resource = res.teacher_resource
            if resources.get(self.teacher_resource, 0) < 1:
                raise ConfigError(f"--teacher-resource {res.teacher_resource}: no node of the Ray cluster declares it; "
                                  "start a node with it (ray start --resources='{\"NAME\": 1}' or --num-gpus), or fix the name")
        elif int(resources.get("GPU", 0)) > 0 and res.device != "cpu":
            self.teacher_resource = "GPU"
        else:
            self.teacher_resource = None
        if self.teacher_resource is None and (res.device or "").startswith("cuda"):
            raise ConfigError(f"--device {res.device} but the Ray cluster has no GPUs; use --device cpu, "
                              "or leave --device unset to use GPUs where the cluster has them")
        self.use_gpu = self.teacher_resource == "GPU"

    def teachers(self) -> int:
        """`--gpu-workers`, else one per unit of the teacher resource (at least one, which waits for
        a node that has it), else one on the CPU."""
        if self.cfg.resources.gpu_workers:
            return self.cfg.resources.gpu_workers
        if self.teacher_resource is None:
            return 1
        return max(1, int(ray.cluster_resources().get(self.teacher_resource, 0)))

    def cpu_actors(self) -> int:
        """`--cpu-workers`, else every CPU of the cluster but the teachers' one each."""
        if self.cfg.resources.cpu_workers:
            return self.cfg.resources.cpu_workers
        return max(1, int(ray.cluster_resources().get("CPU", 1)) - self.teachers())


def teacher_actor_options(cfg: LabelConfig, sizing: ClusterSizing) -> tuple[dict, int | None]:
    """Ray options and torch CPU threads of a teacher actor.

    On a GPU the actor needs one CPU and Ray's one thread, and runs two predict calls at once so
    that one batch's host work overlaps the other's forward (the teacher serialises the device
    pass). On the CPU the teacher is the bottleneck while the CPU actors mostly wait on it, so it
    gets the node's cores (shared by its teachers) instead of Ray's one thread; passive OpenMP
    waiting makes those threads yield when a CPU actor needs a core, where spinning threads would
    stall every parallel region.
    """
    if sizing.use_gpu:
        return {"num_gpus": 1, "num_cpus": 1, "max_concurrency": 2}, None
    if sizing.teacher_resource:
        return {"resources": {sizing.teacher_resource: 1}, "num_cpus": 1, "max_concurrency": 2}, None
    threads = cfg.resources.teacher_threads or max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, sizing.teachers()))
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    return {"num_cpus": 1, "runtime_env": {"env_vars": env}}, threads
