"""What every runner is: a way to drive the stages over a plan's shards and report outcomes.

    runner = RayRunner(plan) | InProcessRunner(plan)   # loads the teacher, or raises TeacherLoadError
    outcomes = runner.run(on_samples, on_outcome)        # one ShardOutcome per shard of plan.todo
    runner.placement()                                   # where the work ran, for the run record

A runner prepares each shard (`stages.prepare`), runs the teacher on its batches, and writes it
(`stages.write`) with `plan.commit(...)`; it reports each shard as it is published, so that an
interrupted run still counts what it wrote, and returns an outcome for every shard it was given.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from pipeline.config import LabelConfig
from pipeline.plan import ShardOutcome
from schemas.errors import describe_error
from teacher.protocol import Teacher

OnSamples = Callable[[int], None]
OnOutcome = Callable[[ShardOutcome], None]


class TeacherLoadError(RuntimeError):
    """The teacher could not be loaded on a worker (bad checkpoint, no network for a hub id), or
    the machine or cluster cannot serve the flags (no GPU for --device cuda)."""


class Runner(Protocol):
    def run(self, on_samples: OnSamples = ..., on_outcome: OnOutcome = ...) -> list[ShardOutcome]:
        """Label the plan's shards; call `on_samples` with the rows of each shard as it is written
        and `on_outcome` for each shard as it ends."""
        ...

    def placement(self) -> dict[str, Any]:
        """Run-record fields about where the work ran (`workers`, `nodes_lost`); may be empty."""
        ...


def load_configured_teacher(cfg: LabelConfig) -> Teacher:
    """The teacher the config names, on this process's device (the one call every runner makes),
    with the box policy of the recipe (CLIP re-scoring, NMS across phrases) when it has one."""
    from teacher.load import load_teacher

    lab = cfg.labels
    teacher = load_teacher(lab.teacher, cfg.grounding_settings(), device=cfg.resources.device,
                           allow_pickle=cfg.policy.allow_pickle_checkpoint, fast=cfg.resources.fast_teacher,
                           precision=lab.precision, revision=lab.teacher_revision)
    if not lab.rescorer and lab.nms_scope == "phrase":
        return teacher
    from teacher.box_policy import PolicyTeacher

    rescorer = None
    if lab.rescorer:
        from teacher.clip.rescore import ClipRescorer

        rescorer = ClipRescorer(lab.rescorer, device=teacher.device, allow_pickle=cfg.policy.allow_pickle_checkpoint,
                                revision=lab.rescorer_revision)
    return PolicyTeacher(teacher, cfg.grounding_settings(), rescorer=rescorer, rescore_threshold=lab.rescore_threshold)


def teacher_load_error(cfg: LabelConfig, exc: BaseException) -> TeacherLoadError:
    detail = describe_error(exc, last_line=True)
    if type(exc).__module__.startswith("ray."):  # Ray relays the actor's error as text, the cause last
        detail = detail.split(": ", 1)[1]
    return TeacherLoadError(f"cannot load teacher {cfg.labels.teacher}: {detail}")
