"""The Ray actors: CPU actors that prepare and write shards, teacher actors that run the model.

Each loads its heavy state once (spaCy and the image decoder; the teacher) and is restarted by
Ray if its process dies. How many of each, and on what resources, is decided here from the
flags and the cluster (`default_workers`, `teacher_actor_options`).
"""

from __future__ import annotations

import os
import threading

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

    def pid(self) -> int:
        return os.getpid()

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
    def __init__(self, config: LabelConfig, cpu_threads: int | None = None) -> None:
        from pipeline.runners.base import load_configured_teacher
        from teacher.protocol import concurrent_calls

        self.config = config
        if cpu_threads:
            import torch

            torch.set_num_threads(min(cpu_threads, len(os.sched_getaffinity(0))))
        self.teacher = load_configured_teacher(config)
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
            dets = predict_resilient(self.teacher, batch.requests, max_tries=self.config.policy.teacher_tries)
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
    threads = cfg.resources.teacher_threads or max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, teachers))
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    return {"num_cpus": 1, "runtime_env": {"env_vars": env}}, threads


def default_workers(cfg: LabelConfig) -> tuple[int, int, bool]:
    """(teacher actors, CPU actors, use GPUs) from flags or the cluster's resources."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    res = cfg.resources
    if gpus == 0 and (res.device or "").startswith("cuda"):
        raise ConfigError(f"--device {res.device} but the Ray cluster has no GPUs; use --device cpu, "
                         "or leave --device unset to use GPUs where the cluster has them")
    use_gpu = gpus > 0 and res.device != "cpu"
    teachers = res.gpu_workers if res.gpu_workers else (gpus if use_gpu else 1)
    spare = cpus - (0 if use_gpu else teachers)
    cpu_workers = res.cpu_workers if res.cpu_workers else max(1, spare)
    return teachers, cpu_workers, use_gpu
