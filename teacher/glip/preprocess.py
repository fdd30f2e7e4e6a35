"""The official GLIP test transform: resize (PIL bilinear, to `teacher.resize.teacher_size`'s
"glip" rule: maskrcnn_benchmark's `get_size`, int() truncation) -> [0, 1] -> BGR x255 ->
normalise -> zero-pad to a multiple of 32.

Resizing stays on the CPU with PIL on purpose: PIL rounds to uint8 after resizing, and
matching the official numbers needs that rounding.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from teacher.resize import teacher_size


def resize_pixels(pixels: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    """uint8 HxWx3 RGB -> uint8 resized with PIL bilinear (a no-op when already the size)."""
    h, w = pixels.shape[:2]
    ow, oh = teacher_size(w, h, min_size, max_size, rule="glip")
    if (oh, ow) == (h, w):
        return np.ascontiguousarray(pixels)
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((ow, oh), Image.BILINEAR))


def normalize(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
              device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 HxWx3 RGB -> float32 3xHxW normalised BGR in the 0-255 range."""
    t = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"])).to(device).permute(2, 0, 1).float() / 255.0
    t = t[[2, 1, 0]] * 255.0
    m = torch.tensor(mean, device=t.device).view(3, 1, 1)
    s = torch.tensor(std, device=t.device).view(3, 1, 1)
    return (t - m) / s


def pad_batch(images: list[torch.Tensor], divisibility: int) -> torch.Tensor:
    h = max(i.shape[1] for i in images)
    w = max(i.shape[2] for i in images)
    h = -(-h // divisibility) * divisibility
    w = -(-w // divisibility) * divisibility
    out = images[0].new_zeros((len(images), 3, h, w))
    for k, img in enumerate(images):
        out[k, :, : img.shape[1], : img.shape[2]] = img
    return out
