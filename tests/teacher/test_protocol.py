"""teacher.protocol: what a backend must declare, and how many calls a runner makes at once."""

from __future__ import annotations

import pytest

from teacher.box_policy import PolicyTeacher
from teacher.protocol import GroundingSettings, ImageDetections, Teacher, concurrent_calls


class Declared:
    teacher_id, revision, device = "t", "r", "cuda"

    def __init__(self, calls: int) -> None:
        self.concurrent_calls = calls

    def predict(self, requests):
        return [ImageDetections() for _ in requests]


class Undeclared:
    teacher_id, revision, device = "t", "r", "cpu"

    def predict(self, requests):
        return [[] for _ in requests]


def test_a_teacher_declares_its_concurrent_calls() -> None:
    assert isinstance(Declared(2), Teacher) and concurrent_calls(Declared(2)) == 2
    assert not isinstance(Undeclared(), Teacher)
    with pytest.raises(AttributeError):
        concurrent_calls(Undeclared())
    with pytest.raises(ValueError, match="concurrent_calls=0; it must be at least 1"):
        concurrent_calls(Declared(0))


def test_the_policy_wrapper_is_a_teacher_with_the_backends_concurrency() -> None:
    policy = PolicyTeacher(Declared(2), GroundingSettings())
    assert isinstance(policy, Teacher) and concurrent_calls(policy) == 2
    assert ImageDetections().image_text_score is None
