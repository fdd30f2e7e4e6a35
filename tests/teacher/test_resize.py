"""teacher.resize.teacher_size: each backend's reference size, and the guards the references lack."""

from __future__ import annotations

import random

import pytest

from teacher.resize import teacher_size


def _detr_get_size(w: int, h: int, size: int, max_size: int) -> tuple[int, int]:
    """DETR's get_size_with_aspect_ratio, copied as the reference (returns (w, h))."""
    min_original, max_original = float(min(w, h)), float(max(w, h))
    if max_original / min_original * size > max_size:
        size = int(round(max_size * min_original / max_original))
    if (w <= h and w == size) or (h <= w and h == size):
        return w, h
    if w < h:
        return size, int(size * h / w)
    return int(size * w / h), size


# -- teacher_size ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "glip", "transformers"),
    [
        ((640, 480), (1066, 800), (1066, 800)),
        ((480, 640), (800, 1066), (800, 1066)),
        ((1000, 800), (1000, 800), (1000, 800)),
        ((800, 800), (800, 800), (800, 800)),
        ((4000, 1000), (1332, 333), (1333, 333)),
        ((500, 188), (1332, 501), (1333, 501)),  # the two references round a panorama differently
        ((1, 1), (800, 800), (800, 800)),
        ((1, 10_000), (1, 1333), (1, 1333)),
        ((10_000, 3), (1333, 1), (1333, 1)),
    ],
)
def test_teacher_size_examples(size, glip, transformers):
    assert teacher_size(*size, rule="glip") == glip
    assert teacher_size(*size) == teacher_size(*size, rule="transformers") == transformers


def test_teacher_size_matches_each_backends_reference_and_bounds():
    from transformers.image_transforms import get_size_with_aspect_ratio

    rng = random.Random(0)
    for _ in range(5000):
        w, h = rng.randint(1, 6000), rng.randint(1, 6000)
        for rule, reference in (("glip", _detr_get_size(w, h, 800, 1333)),
                                ("transformers", get_size_with_aspect_ratio((h, w), 800, 1333)[::-1])):
            tw, th = teacher_size(w, h, rule=rule)
            assert 1 <= min(tw, th) <= 800 and 1 <= max(tw, th) <= 1333
            if min(reference) >= 1 and max(reference) <= 1333:
                assert (tw, th) == tuple(reference), (rule, w, h)


def test_teacher_size_custom_limits_and_validation():
    assert teacher_size(2000, 1000, min_size=400, max_size=600) == (600, 300)
    with pytest.raises(ValueError):
        teacher_size(0, 10)
    with pytest.raises(ValueError):
        teacher_size(10, 10, min_size=900, max_size=800)
