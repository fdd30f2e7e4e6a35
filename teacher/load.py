"""Pick and load a teacher backend from the `--teacher` spec."""

from __future__ import annotations

from pathlib import Path

from teacher.checkpoints import materialise, read_json
from teacher.protocol import DEFAULT_PRECISION, GroundingSettings, Teacher


def _is_glip(spec: str) -> bool:
    if spec.startswith(("glip-t:", "glip-l:")):
        return True
    local = Path(spec)
    return local.is_dir() and read_json(local / "config.json").get("model_type") == "glip"


def load_teacher(
    spec: str,
    settings: GroundingSettings,
    *,
    device: str | None = None,
    allow_pickle: bool = False,
    fast: bool = True,
    precision: str = DEFAULT_PRECISION,
) -> Teacher:
    """Load the backend `spec` names: `glip-t:PATH`, `glip-l:PATH`, a converted GLIP directory,
    or (the default) a Grounding DINO family checkpoint: hub id, local directory or s3:// prefix.

    `precision` "bf16" runs a GPU teacher under bf16 autocast, "fp32" in full precision; a CPU
    teacher always computes in fp32."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    if not spec.startswith(("glip-t:", "glip-l:")) and "://" in spec:
        spec_local = materialise(spec)
    else:
        spec_local = spec
    if _is_glip(spec_local):
        from teacher.glip import load_glip_teacher

        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        teacher = load_glip_teacher(spec_local, settings, device, precision)
        teacher.teacher_id = spec
        return teacher
    from teacher.grounding_dino import GroundingDinoTeacher

    teacher = GroundingDinoTeacher(spec_local, settings, device=device, allow_pickle=allow_pickle, fast=fast, precision=precision)
    teacher.teacher_id = spec
    return teacher
