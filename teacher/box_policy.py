"""What happens to a teacher's boxes after the teacher, whatever the backend.

- CLIP re-scoring (YOLO-World): every box crop is scored against its phrase (`clip_score`), the
  box gets `rescored` = sqrt(score * clip_score), boxes under `rescore_threshold` go, and NMS per
  phrase runs again on the rescored score; each image also gets CLIP's score against its caption.
- NMS across phrases (GRIT): after the teacher's own NMS per phrase, a class-agnostic greedy NMS
  over all of an image's boxes, so two phrases never keep the same box. It runs after, not
  instead, because GRIT applies it to GLIP's output, which is already NMS'd per phrase.

`PolicyTeacher` wraps any `Teacher` and is itself one, so runners, retries and OOM bisection
see no difference.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from teacher.clip.rescore import rescored as rescored_score
from teacher.grounding import greedy_nms
from teacher.protocol import Detection, GroundingSettings, ImageDetections, Teacher, TeacherRequest


class PolicyTeacher:
    def __init__(self, teacher: Teacher, settings: GroundingSettings, *, rescorer: Any = None,
                 rescore_threshold: float = 0.3) -> None:
        self.teacher = teacher
        self.settings = settings
        self.rescorer = rescorer
        self.rescore_threshold = rescore_threshold
        self.teacher_id, self.revision, self.device = teacher.teacher_id, teacher.revision, teacher.device
        self.concurrent_calls = teacher.concurrent_calls

    def predict(self, requests: Sequence[TeacherRequest]) -> list[list[Detection]]:
        found = self.teacher.predict(requests)
        results = [ImageDetections(dets) for dets in found]
        if self.rescorer is not None:
            clip, image_scores = self.rescorer.score(requests, found)
            results = [self._rescored(dets, scores) for dets, scores in zip(found, clip)]
            for boxes, score in zip(results, image_scores):
                boxes.image_text_score = score
        if self.settings.nms_scope == "image":
            for i, boxes in enumerate(results):
                kept = _across_phrases(boxes, self.settings.nms_iou, self.settings.max_boxes)
                results[i] = ImageDetections(kept)
                results[i].image_text_score = boxes.image_text_score
        return results

    def _rescored(self, dets: Sequence[Detection], clip_scores: Sequence[float]) -> ImageDetections:
        """sqrt(score * clip_score), the threshold on it, then NMS per phrase on it, top K."""
        rescored = [dataclasses.replace(d, clip_score=float(c), rescored=rescored_score(max(d.score, 0.0), max(c, 0.0)))
                    for d, c in zip(dets, clip_scores)]
        rescored = [d for d in rescored if d.rescored >= self.rescore_threshold]
        if not rescored:
            return ImageDetections()
        boxes = np.array([[d.x0, d.y0, d.x1, d.y1] for d in rescored], dtype=np.float64)
        scores = np.array([d.rescored for d in rescored], dtype=np.float64)
        phrases = np.array([d.phrase for d in rescored], dtype=np.int64)
        kept = greedy_nms(boxes, scores, phrases, self.settings.nms_iou, self.settings.max_boxes)
        return ImageDetections(rescored[i] for i in kept)


def _across_phrases(dets: Sequence[Detection], iou: float, max_boxes: int) -> list[Detection]:
    """Class-agnostic greedy NMS by the box's final score (rescored when there is one)."""
    if not dets:
        return []
    boxes = np.array([[d.x0, d.y0, d.x1, d.y1] for d in dets], dtype=np.float64)
    scores = np.array([d.rescored if d.rescored is not None else d.score for d in dets], dtype=np.float64)
    return [dets[i] for i in greedy_nms(boxes, scores, None, iou, max_boxes)]
