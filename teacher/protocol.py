"""What every teacher backend provides (`Teacher`), and what goes in and comes out of it.

A backend (`teacher/glip/`, `teacher/grounding_dino/`, ...) loads once per worker, then takes
batches of `TeacherRequest`: images already decoded and resized on the CPU (uint8, HxWx3, to its
resize rule, `teacher.resize`), each with its caption and the character spans of the phrases
to ground. It returns, for each request in order, that image's `Detection`s: boxes in the pixel
frame `width` x `height` (the decoded image's full size), each naming the phrase it grounds.
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


class ImageDetections(list):
    """One image's detections, as `predict` may return them: a list of `Detection` that, when CLIP
    re-scored it (`teacher.box_policy.PolicyTeacher` with a rescorer), also carries CLIP's score of
    the whole image against its caption."""

    image_text_score: float | None = None


@runtime_checkable
class Teacher(Protocol):
    """What every backend provides; the runners use nothing else."""

    teacher_id: str  # what the manifests record as the teacher: the --teacher value
    revision: str  # the checkpoint's revision: the pinned one, a directory's content id, or the hub commit
    device: str  # where it computes: "cuda", "cuda:1", "cpu"
    # How many `predict` calls it takes at once (from as many threads): 1, or 2 for a GPU teacher
    # that overlaps one call's host work (prompts, padding, NMS) with another's forward.
    concurrent_calls: int

    def predict(self, requests: Sequence[TeacherRequest]) -> list[list[Detection]]:
        """For each request, in order, its detections (a list, or an `ImageDetections`): at most
        `max_boxes` boxes in the request's `width` x `height` frame, `phrase` indexing its spans,
        scores in [0, 1]. Raises on a failed batch (`teacher.resilient` retries and splits it)."""
        ...


def concurrent_calls(teacher: Teacher) -> int:
    """How many `predict` calls to make to `teacher` at once: its declared `concurrent_calls`,
    checked to be at least 1."""
    calls = int(teacher.concurrent_calls)
    if calls < 1:
        raise ValueError(f"teacher {teacher.teacher_id} declares concurrent_calls={calls}; it must be at least 1")
    return calls
