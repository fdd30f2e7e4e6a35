"""How the Ray runner sizes its teacher actors (no Ray cluster needed: resources are given)."""

from __future__ import annotations

import pytest

from pipeline.runners import ray_actors
from pipeline.config import build_config


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch):
    resources = {"CPU": 8.0}
    monkeypatch.setattr(ray_actors.ray, "cluster_resources", lambda: dict(resources))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    return resources


def _config(**extra):
    return build_config(dict(input="in/*.tar", output="out", teacher="t", **extra))


def test_gpu_teacher_gets_a_gpu_rays_single_thread_and_two_concurrent_calls(cluster) -> None:
    options, threads = ray_actors.teacher_actor_options(_config(), teachers=2, use_gpu=True)
    assert options == {"num_gpus": 1, "num_cpus": 1, "max_concurrency": 2}
    assert threads is None


def test_cpu_teacher_shares_the_cores_and_waits_passively(cluster) -> None:
    options, threads = ray_actors.teacher_actor_options(_config(), teachers=2, use_gpu=False)
    assert threads == 4
    assert options["num_cpus"] == 1
    assert options["runtime_env"]["env_vars"] == {"OMP_WAIT_POLICY": "PASSIVE"}
    _, threads = ray_actors.teacher_actor_options(_config(), teachers=16, use_gpu=False)
    assert threads == 1


def test_cpu_teacher_threads_flag_and_users_wait_policy_win(cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    options, threads = ray_actors.teacher_actor_options(_config(teacher_threads=3), teachers=1, use_gpu=False)
    assert threads == 3
    assert options["runtime_env"]["env_vars"] == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_default_workers_leave_the_teacher_its_cpu(cluster) -> None:
    assert ray_actors.default_workers(_config(device="cpu")) == (1, 7, False)
    assert ray_actors.default_workers(_config(device="cpu", cpu_workers=2, gpu_workers=2)) == (2, 2, False)
