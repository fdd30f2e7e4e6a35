"""Turn one output row into a training target: label filters, tokens and positive map, image.

Split in two stages on purpose. `prepare_labels` works on the JSON record only (cheap) and decides
whether a sample survives the filters; `load_image` decodes and resizes the image (expensive). The
loader shuffles and skips (for resume) between the two, so a resumed run never decodes the images
of the samples it skips.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from schemas import final_score
from teacher.grounding import greedy_nms, positive_map

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class LabelFilter:
    """Which pseudo-labels a student trains on, applied when loading (as GLIP does).

    The job stores boxes down to a low threshold so this choice can change without relabelling.
    """

    min_score: float = 0.0
    nms_iou: float | None = None  # per-phrase NMS at this IoU; None: no NMS
    min_boxes: int = 1  # samples with fewer boxes left are skipped
    max_boxes: int | None = None  # keep the highest-scoring ones
    statuses: tuple[str, ...] = ("ok",)


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """How the caption becomes token ids.

    prompt="caption": the caption itself (GLIP contextual grounding), phrases keep their spans.
    prompt="phrases": the distinct phrase texts joined as a detection prompt ("a dog. a cat."),
    which is the form whose "."-separated groups Grounding DINO's own loss understands.
    """

    max_text_len: int = 256
    prompt: str = "caption"


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """DETR-style resize (shorter side to `min_size`, longer at most `max_size`), then normalise.

    normalize=False keeps the images uint8 through collate and pinned-memory transfer (a quarter of
    the bytes); call `normalize_pixels` on the device then, as the labelling job does for its teacher.
    """

    min_size: int = 800
    max_size: int = 1333
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    normalize: bool = True


def filter_boxes(row: dict[str, Any], flt: LabelFilter) -> list[dict[str, Any]]:
    """The row's boxes that pass score, NMS and max-boxes filters, highest score first (each box's
    `final_score`: the CLIP-rescored one when the output has it)."""
    boxes = [b for b in row.get("boxes") or [] if final_score(b) >= flt.min_score and b["x1"] > b["x0"] and b["y1"] > b["y0"]]
    if not boxes:
        return []
    scores = np.array([final_score(b) for b in boxes], dtype=np.float32)
    if flt.nms_iou is not None:
        xyxy = np.array([[b["x0"], b["y0"], b["x1"], b["y1"]] for b in boxes], dtype=np.float32)
        phrase = np.array([b["phrase"] for b in boxes], dtype=np.int64)
        keep = greedy_nms(xyxy, scores, phrase, flt.nms_iou).tolist()
    else:
        keep = np.argsort(-scores, kind="stable").tolist()
    if flt.max_boxes is not None:
        keep = keep[: flt.max_boxes]
    return [boxes[i] for i in keep]


def build_prompt(row: dict[str, Any], mode: str) -> tuple[str, list[tuple[int, int]]]:
    """The text fed to the tokenizer and, per phrase of the row, its character span in that text."""
    phrases = row.get("phrases") or []
    if mode == "caption":
        return row["caption"], [(p["start"], p["end"]) for p in phrases]
    if mode != "phrases":
        raise ValueError(f"unknown prompt mode {mode!r} (expected 'caption' or 'phrases')")
    text, where, spans = "", {}, []
    for p in phrases:
        if p["text"] not in where:
            start = len(text)
            text += p["text"] + ". "
            where[p["text"]] = (start, start + len(p["text"]))
        spans.append(where[p["text"]])
    return text.rstrip(), spans


def prepare_labels(
    record: dict[str, Any], tokenizer: Any, flt: LabelFilter, text: TextConfig
) -> dict[str, Any] | None:
    """Filtered boxes, token ids and positive map for one JSON record; None when it is filtered out.

    Boxes whose phrase lies entirely past the tokenizer's truncation have no positive token and are
    dropped (a box without text cannot be supervised).
    """
    if record.get("status") not in flt.statuses or record.get("width") is None:
        return None
    boxes = filter_boxes(record, flt)
    if len(boxes) < flt.min_boxes:
        return None
    prompt, spans = build_prompt(record, text.prompt)
    enc = tokenizer(prompt, truncation=True, max_length=text.max_text_len, return_offsets_mapping=True)
    phrase_map = positive_map(enc["offset_mapping"], spans, text.max_text_len).bool()  # MDETR tokens_positive
    phrase_ids = torch.tensor([b["phrase"] for b in boxes], dtype=torch.long)
    pos = phrase_map[phrase_ids] if len(boxes) else torch.zeros(0, text.max_text_len, dtype=torch.bool)
    reachable = pos.any(dim=1)
    if int(reachable.sum()) < flt.min_boxes:
        return None
    kept = [b for b, ok in zip(boxes, reachable.tolist()) if ok]
    return {
        "key": record["key"],
        "caption": record["caption"],
        "prompt": prompt,
        "frame": (int(record["height"]), int(record["width"])),
        "boxes_xyxy": torch.tensor([[b["x0"], b["y0"], b["x1"], b["y1"]] for b in kept], dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor([final_score(b) for b in kept], dtype=torch.float32),
        "phrase_ids": phrase_ids[reachable],
        "phrases": [p["text"] for p in record.get("phrases") or []],
        "input_ids": torch.tensor(enc["input_ids"], dtype=torch.long),
        "positive_map": pos[reachable],
    }


def decode_image(data: bytes, frame: tuple[int, int]) -> Image.Image:
    """RGB image in the boxes' frame (height, width).

    The tar holds the original bytes; the labelling job decoded them with EXIF orientation applied
    when it recorded width x height. Use whichever orientation matches that frame.
    """
    img = Image.open(io.BytesIO(data))
    img.load()
    height, width = frame
    if img.size != (width, height):
        transposed = ImageOps.exif_transpose(img)
        if transposed is not None and transposed.size == (width, height):
            img = transposed
    return img.convert("RGB")


def resized_size(width: int, height: int, cfg: ImageConfig) -> tuple[int, int]:
    """(new_width, new_height) for the DETR resize rule."""
    scale = cfg.min_size / min(width, height)
    if max(width, height) * scale > cfg.max_size:
        scale = cfg.max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def normalize_pixels(pixels: torch.Tensor, cfg: ImageConfig) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float, mean/std normalised (on whatever device `pixels` is on).

    Padding stays whatever value it had; models read the pixel mask, not the padded values.
    """
    mean = torch.tensor(cfg.mean, device=pixels.device).view(3, 1, 1) * 255.0
    std = torch.tensor(cfg.std, device=pixels.device).view(3, 1, 1) * 255.0
    return pixels.float().sub_(mean).div_(std)


def load_image(prepared: dict[str, Any], data: bytes, cfg: ImageConfig) -> dict[str, Any]:
    """Decode, resize and normalise the image; move the boxes into the resized frame.

    Adds `image` [3,H,W] (float, or uint8 when not normalising), `boxes` normalised cxcywh (DETR/HF convention: relative to the
    unpadded resized image), `boxes_xyxy` in resized pixels and `size` (H, W).
    """
    img = decode_image(data, prepared["frame"])
    frame_h, frame_w = prepared["frame"]
    new_w, new_h = resized_size(img.width, img.height, cfg)
    img = img.resize((new_w, new_h), Image.BILINEAR)
    pixels = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()  # uint8 CHW
    image = normalize_pixels(pixels, cfg) if cfg.normalize else pixels
    scale = torch.tensor([new_w / frame_w, new_h / frame_h] * 2)
    xyxy = prepared["boxes_xyxy"] * scale
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, new_w)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, new_h)
    cxcywh = torch.stack(
        [(xyxy[:, 0] + xyxy[:, 2]) / 2 / new_w, (xyxy[:, 1] + xyxy[:, 3]) / 2 / new_h,
         (xyxy[:, 2] - xyxy[:, 0]) / new_w, (xyxy[:, 3] - xyxy[:, 1]) / new_h], dim=1,
    )
    out = dict(prepared)
    out.update(image=image, boxes=cxcywh, boxes_xyxy=xyxy, size=(new_h, new_w))
    return out
