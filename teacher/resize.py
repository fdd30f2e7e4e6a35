"""How big the teacher's input is: one size rule per backend, the rounding of its reference.

The CPU workers resize every image to this size before the teacher sees it
(`pipeline.stages.images.decode_for_teacher`, the rule named by `TeacherSpec.resize_rule`), and
a backend that resizes by itself uses the same function (`teacher.glip.preprocess.resize_pixels`),
so each rule is written once. A new backend whose reference sizes its input another way adds its
rule here (its name to `RESIZE_RULES`) and names it in `TeacherSpec.resize_rule`.
"""

from __future__ import annotations

RESIZE_RULES = ("transformers", "glip")


def teacher_size(width: int, height: int, min_size: int = 800, max_size: int = 1333,
                 rule: str = "transformers") -> tuple[int, int]:
    """The (w, h) the teacher sees: shortest side to `min_size`, longest side at most `max_size`.

    Each backend's reference resizes with its own rounding, and the teacher sees exactly the
    reference's size (a real checkpoint was trained and evaluated at it):

    - "transformers" (Grounding DINO family): `transformers.image_transforms.
      get_size_with_aspect_ratio`, what its image processor does. When the long side would pass
      `max_size`, the short side becomes round(max_size * short / long) and the long side
      int(max_size * short / long * long / short), from the unrounded short side (a 500x188
      panorama becomes 1333x501).
    - "glip": maskrcnn_benchmark's `Resize.get_size` (also DETR's): the long side is computed from
      the rounded short side (the same panorama becomes 1332x501).

    Both keep the image as is when its short side already equals the target. Two guards the
    references lack: every side is at least 1 (a 1x10000 strip), and the long side is clamped to
    `max_size`. Small images ARE upsampled (a 1x1 pixel becomes 800x800), as the references do.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size} and {max_size}")
    if rule not in RESIZE_RULES:
        raise ValueError(f"resize rule {rule!r} is not one of {', '.join(RESIZE_RULES)}")
    short, long = min(width, height), max(width, height)
    size, raw = min_size, None
    if long / short * min_size > max_size:
        raw = max_size * short / long
        size = int(round(raw))
    if short == size and long <= max_size:
        return width, height
    short_target = max(1, size)
    if rule == "transformers" and raw is not None:
        long_target = int(raw * long / short)
    else:
        long_target = int(short_target * long / short)
    long_target = max(1, min(max_size, long_target))
    if width <= height:
        return short_target, long_target
    return long_target, short_target
