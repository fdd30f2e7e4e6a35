"""How the Ray runner sizes and places its actors (no Ray cluster needed: resources are given)."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, build_config
from pipeline.runners import ray_actors
from pipeline.runners.ray_actors import ClusterSizing, teacher_actor_options


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch):
    resources = {"CPU": 8.0}
    monkeypatch.setattr(ray_actors.ray, "cluster_resources", lambda: dict(resources))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    return resources


def _config(**extra):
    return build_config(dict(input="in/*.tar", output="out", teacher="t", **extra))


def test_gpu_teachers_get_a_gpu_a_cpu_rays_single_thread_and_two_concurrent_calls(cluster) -> None:
    cluster["GPU"] = 2.0
    sizing = ClusterSizing(_config())
    options, threads = teacher_actor_options(_config(), sizing)
    assert options == {"num_gpus": 1, "num_cpus": 1, "max_concurrency": 2}
    assert threads is None
    assert (sizing.teachers(), sizing.cpu_actors()) == (2, 6)  # the teachers' CPUs are not the CPU actors'


def test_cpu_teacher_shares_the_cores_and_waits_passively(cluster) -> None:
    options, threads = teacher_actor_options(_config(), ClusterSizing(_config()))
    assert threads == 8
    assert options["num_cpus"] == 1
    assert options["runtime_env"]["env_vars"] == {"OMP_WAIT_POLICY": "PASSIVE"}
    _, threads = teacher_actor_options(_config(gpu_workers=16), ClusterSizing(_config(gpu_workers=16)))
    assert threads == 1


def test_cpu_teacher_threads_flag_and_users_wait_policy_win(cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    options, threads = teacher_actor_options(_config(teacher_threads=3), ClusterSizing(_config(teacher_threads=3)))
    assert threads == 3
    assert options["runtime_env"]["env_vars"] == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_default_workers_leave_the_teacher_its_cpu(cluster) -> None:
    sizing = ClusterSizing(_config(device="cpu"))
    assert (sizing.teachers(), sizing.cpu_actors(), sizing.use_gpu) == (1, 7, False)
    sizing = ClusterSizing(_config(device="cpu", cpu_workers=2, gpu_workers=2))
    assert (sizing.teachers(), sizing.cpu_actors()) == (2, 2)


def test_sizes_follow_the_cluster_as_nodes_come_and_go(cluster) -> None:
    cluster["GPU"] = 1.0
    sizing = ClusterSizing(_config())
    assert (sizing.teachers(), sizing.cpu_actors()) == (1, 7)
    cluster.update(GPU=3.0, CPU=20.0)  # a node joined
    assert (sizing.teachers(), sizing.cpu_actors()) == (3, 17)
    cluster.update(GPU=0.0, CPU=4.0)  # the GPU nodes were lost: one teacher waits for a GPU
    assert (sizing.teachers(), sizing.cpu_actors()) == (1, 3)


def test_a_custom_teacher_resource_places_the_teachers(cluster) -> None:
    cluster["teacher_node"] = 2.0
    sizing = ClusterSizing(_config(teacher_resource="teacher_node"))
    options, _ = teacher_actor_options(_config(teacher_resource="teacher_node"), sizing)
    assert options["resources"] == {"teacher_node": 1} and options["num_cpus"] == 1
    assert sizing.teachers() == 2
    with pytest.raises(ConfigError, match="no node of the Ray cluster declares it"):
        ClusterSizing(_config(teacher_resource="missing"))


def test_cuda_on_a_cluster_without_gpus_is_refused(cluster) -> None:
    with pytest.raises(ConfigError, match="--device cuda but the Ray cluster has no GPUs"):
        ClusterSizing(_config(device="cuda"))
