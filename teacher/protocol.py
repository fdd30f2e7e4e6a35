"""What every teacher backend offers: load once per worker, then predict batches.

A backend receives images already decoded and resized on the CPU (uint8, HxWx3), with the
caption and the character spans of the phrases to ground, and returns boxes in the pixel
frame given by `width` x `height` (the decoded image's full size), one list per image.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

# A teacher's arithmetic on a GPU ("bf16": autocast; "fp32": full precision). A CPU teacher
# computes in fp32 whatever the setting.
PRECISIONS = ("bf16", "fp32")
DEFAULT_PRECISION = "bf16"


@dataclasses.dataclass(frozen=True)
class GroundingSettings:
    """How token logits become boxes (ARCHITECTURE.md, "Grounding semantics")."""

    box_threshold: float = 0.1
    nms_iou: float = 0.5
    max_boxes: int = 100
    prompt_mode: str = "caption"  # "caption" (GLIP contextual grounding) or "phrases"
    nms_scope: str = "phrase"  # "phrase": NMS per phrase; "image": then across phrases too (teacher.box_policy)


@dataclasses.dataclass
class TeacherRequest:
    pixels: np.ndarray  # uint8 [h, w, 3], RGB, resized for the teacher
    width: int  # frame of the returned boxes (decoded image width)
    height: int
    caption: str
    spans: list[tuple[int, int]]  # phrase character spans into `caption`


@dataclasses.dataclass(frozen=True)
class Detection:
    phrase: int  # index into the request's spans
    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    clip_score: float | None = None  # with a rescorer: the crop's CLIP score against its phrase
    rescored: float | None = None  # with a rescorer: sqrt(score * clip_score)

    def as_row(self) -> dict:
        """The box as a Parquet struct; the rescorer's fields only when it ran (its own columns)."""
        row = dataclasses.asdict(self)
        if self.clip_score is None:
            del row["clip_score"], row["rescored"]
        return row


@runtime_checkable
class Teacher(Protocol):
    teacher_id: str
    revision: str
    device: str

    def predict(self, requests: Sequence[TeacherRequest]) -> list[list[Detection]]:
        """Boxes for each request, in the same order."""
        ...


def concurrent_calls(teacher: Teacher) -> int:
    """How many `predict` calls the teacher takes at once: its optional `concurrent_calls`
    attribute (a GPU teacher overlaps one call's host work with another's forward), else 1."""
    return max(1, int(getattr(teacher, "concurrent_calls", 1)))
