"""Runners drive the stages over a plan's shards: on Ray (`ray_runner`, the default: CPU actors
prepare and write, GPU actors run the teacher) or in one process (`inprocess`: CPU worker
processes hand batches to the teacher through shared memory, `shm_transport`)."""

from __future__ import annotations

from pipeline.plan import RunPlan
from pipeline.runners.base import Runner, TeacherLoadError


def make_runner(name: str, plan: RunPlan, *, ray_address: str | None = None) -> Runner:
    """The runner `--runner` names, with its workers started and the teacher loaded."""
    if name == "inprocess":
        from pipeline.runners.inprocess import InProcessRunner

        return InProcessRunner(plan)
    from pipeline.runners.ray_runner import RayRunner

    return RayRunner(plan, address=ray_address)


__all__ = ["Runner", "TeacherLoadError", "make_runner"]
