"""The box policy after any teacher: NMS across phrases (GRIT) and CLIP re-scoring (YOLO-World)."""

from __future__ import annotations

import math

import numpy as np

from teacher.box_policy import PolicyTeacher
from teacher.protocol import Detection, GroundingSettings, TeacherRequest

REQUEST = TeacherRequest(np.zeros((100, 100, 3), np.uint8), 100, 100, "a dog on a sofa", [(0, 5), (9, 15)])


class FixedTeacher:
    teacher_id, revision, device, concurrent_calls = "fixed", "r", "cpu", 1

    def __init__(self, dets: list[Detection]) -> None:
        self.dets = dets

    def predict(self, requests):
        return [list(self.dets) for _ in requests]


class FixedRescorer:
    def __init__(self, clip: list[float], image: float) -> None:
        self.clip, self.image = clip, image

    def score(self, requests, detections):
        return [self.clip[: len(d)] for d in detections], [self.image for _ in requests]


DOG = Detection(0, 10, 10, 50, 50, 0.9)
SOFA_SAME_PLACE = Detection(1, 12, 12, 50, 52, 0.6)  # IoU with DOG about 0.86
SOFA_ELSEWHERE = Detection(1, 60, 60, 90, 90, 0.5)


def test_image_scope_removes_boxes_of_other_phrases_in_the_same_place() -> None:
    teacher = FixedTeacher([DOG, SOFA_SAME_PLACE, SOFA_ELSEWHERE])
    by_phrase = PolicyTeacher(teacher, GroundingSettings(nms_scope="phrase"), rescorer=FixedRescorer([1, 1, 1], 1))
    assert len(PolicyTeacher(teacher, GroundingSettings(nms_scope="image")).predict([REQUEST])[0]) == 2
    assert PolicyTeacher(teacher, GroundingSettings(nms_scope="image")).predict([REQUEST])[0] == [DOG, SOFA_ELSEWHERE]
    assert len(by_phrase.predict([REQUEST])[0]) == 3


def test_rescoring_is_sqrt_of_score_times_clip_then_threshold_then_nms_per_phrase() -> None:
    teacher = FixedTeacher([DOG, Detection(0, 11, 11, 50, 50, 0.8), SOFA_ELSEWHERE])
    policy = PolicyTeacher(teacher, GroundingSettings(nms_iou=0.5), rescorer=FixedRescorer([0.1, 0.9, 0.04], 0.7),
                           rescore_threshold=0.3)
    boxes = policy.predict([REQUEST])[0]
    # dog 1: sqrt(0.9 * 0.1) = 0.30; dog 2: sqrt(0.8 * 0.9) = 0.85 (suppresses dog 1); sofa: sqrt(0.5 * 0.04) = 0.14 < 0.3
    assert [(d.phrase, round(d.rescored, 3)) for d in boxes] == [(0, round(math.sqrt(0.72), 3))]
    assert boxes[0].score == 0.8 and boxes[0].clip_score == 0.9  # the teacher's score is kept beside
    assert boxes.image_text_score == 0.7
    assert set(boxes[0].as_row()) == {"phrase", "x0", "y0", "x1", "y1", "score", "clip_score", "rescored"}
    assert set(DOG.as_row()) == {"phrase", "x0", "y0", "x1", "y1", "score"}  # no rescorer, no extra fields
