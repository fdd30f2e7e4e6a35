"""Pick and load a teacher backend from the `--teacher` spec."""

from __future__ import annotations

from teacher.checkpoints import materialise
from teacher.protocol import DEFAULT_PRECISION, GroundingSettings, Teacher
from teacher.spec import TeacherSpec


def load_teacher(
    spec: str,
    settings: GroundingSettings,
    *,
    device: str | None = None,
    allow_pickle: bool = False,
    fast: bool = True,
    precision: str = DEFAULT_PRECISION,
    revision: str | None = None,
) -> Teacher:
    """Load the backend `spec` names: `glip-t:PATH`, `glip-l:PATH`, a converted GLIP directory,
    or (the default) a Grounding DINO family checkpoint: hub id, local directory or s3:// prefix.

    `precision` "bf16" runs a GPU teacher under bf16 autocast, "fp32" in full precision; a CPU
    teacher always computes in fp32. `revision` pins a hub checkpoint's commit (--teacher-revision)."""
    from transformers.utils import logging as hf_logging

    from teacher.glip.checkpoint import is_glip_checkpoint_dir

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    parsed = TeacherSpec.parse(spec)
    local = spec if parsed.variant else materialise(spec)
    if parsed.variant or is_glip_checkpoint_dir(local):
        import torch

        from teacher.glip import load_glip_teacher

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        teacher = load_glip_teacher(local, settings, device, precision)
    else:
        from teacher.grounding_dino.teacher import GroundingDinoTeacher

        teacher = GroundingDinoTeacher(local, settings, device=device, allow_pickle=allow_pickle, fast=fast,
                                       precision=precision, revision=revision)
    teacher.teacher_id = spec
    return teacher
