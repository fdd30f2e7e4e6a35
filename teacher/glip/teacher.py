"""GLIP as a `teacher.protocol.Teacher` backend.

Per request: the caption (or the joined phrases) is the prompt, each phrase span becomes
a positive map over its tokens, the image is resized to the model's test size, and the
official ATSS post-processing gives boxes with score sqrt(mean token prob x centerness),
NMS per phrase; boxes are then scaled to the request's width x height frame. Requests with
different captions share a batch (one prompt per batch item).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import BertTokenizerFast

from teacher.glip.checkpoint import (
    build_model_from_state,
    is_glip_checkpoint_dir,
    load_converted_dir,
    read_official_checkpoint,
)
from teacher.glip.config import config_for_variant
from teacher.glip.inference import detect
from teacher.glip.model import GlipModel
from teacher.glip.preprocess import normalize, pad_batch, resize_pixels
from teacher.glip.text import build_prompts, encode_prompts, load_tokenizer
from teacher.precision import autocast_dtype
from teacher.protocol import DEFAULT_PRECISION, Detection, GroundingSettings, Teacher, TeacherRequest
from teacher.spec import TeacherSpec


@dataclasses.dataclass
class _Item:
    request: int
    phrase_ids: list[int]
    pixels: np.ndarray  # resized for the model


class GlipTeacher:
    """Load once per worker with `GlipTeacher.load`, then `predict` batches of requests."""

    def __init__(self, model: GlipModel, tokenizer: BertTokenizerFast, settings: GroundingSettings, device: str,
                 dtype: torch.dtype | None, teacher_id: str, revision: str, max_batch: int = 8) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = device
        self.autocast_dtype = dtype if (dtype is not None and dtype != torch.float32
                                        and torch.device(device).type == "cuda") else None
        self.teacher_id = teacher_id
        self.revision = revision
        self.max_batch = max_batch
        self.concurrent_calls = 1  # one call at a time: its host work is small next to its forward

    @classmethod
    def load(cls, path_or_spec: str, settings: GroundingSettings, device: str = "cpu",
             dtype: torch.dtype | None = None, max_batch: int = 8) -> "GlipTeacher":
        """`glip-t:FILE.pth`, `glip-l:FILE.pth` (tokenizer from vocab.txt beside it) or a
        converted directory. `dtype` bfloat16 means bf16 autocast on a GPU (weights stay fp32)."""
        parsed = TeacherSpec.parse(path_or_spec)
        variant, rest = parsed.variant, parsed.location
        if variant and Path(rest).is_dir():
            teacher = cls.load(rest, settings, device, dtype, max_batch)
            if teacher.model.config.variant != variant:
                raise ValueError(f"{rest} holds a {teacher.model.config.variant!r} model, not {variant!r}")
            return teacher
        if variant and rest:
            pth = Path(rest)
            model = build_model_from_state(config_for_variant(variant), read_official_checkpoint(pth), device)
            tokenizer = load_tokenizer(pth.parent)
            teacher_id, revision = f"{variant}:{pth.name}", f"{pth.stat().st_size}-{int(pth.stat().st_mtime)}"
        elif is_glip_checkpoint_dir(path_or_spec):
            model = load_converted_dir(path_or_spec, device)
            tokenizer = load_tokenizer(path_or_spec)
            teacher_id = f"{model.config.variant}:{Path(path_or_spec).name}"
            revision = _dir_revision(Path(path_or_spec))
        else:
            raise ValueError(f"not a GLIP teacher spec: {path_or_spec!r} (use glip-t:PATH.pth, "
                             "glip-l:PATH.pth or a directory written by teacher.glip.convert)")
        return cls(model, tokenizer, settings, device, dtype, teacher_id, revision, max_batch)

    def _items(self, requests: Sequence[TeacherRequest]) -> tuple[list[_Item], list]:
        cfg = self.model.config
        items, prompts = [], []
        for r, req in enumerate(requests):
            chunks = build_prompts(self.tokenizer, req.caption, list(req.spans), self.settings.prompt_mode,
                                   cfg.max_query_len)
            if not chunks:
                continue
            pixels = resize_pixels(req.pixels, cfg.min_size_test, cfg.max_size_test)
            for prompt in chunks:
                items.append(_Item(r, prompt.phrase_ids, pixels))
                prompts.append(prompt)
        return items, prompts

    def predict(self, requests: Sequence[TeacherRequest]) -> list[list[Detection]]:
        cfg = self.model.config
        items, prompts = self._items(requests)
        results: list[list[Detection]] = [[] for _ in requests]
        for start in range(0, len(items), self.max_batch):
            batch, batch_prompts = items[start:start + self.max_batch], prompts[start:start + self.max_batch]
            images = [normalize(it.pixels, cfg.pixel_mean, cfg.pixel_std, self.device) for it in batch]
            sizes = [tuple(img.shape[1:]) for img in images]
            ids, mask, maps = encode_prompts(self.tokenizer, batch_prompts, cfg.max_query_len)
            dets = detect(self.model, pad_batch(images, cfg.size_divisibility), sizes, ids, mask, maps,
                          nms_thresh=self.settings.nms_iou, detections_per_img=self.settings.max_boxes,
                          autocast_dtype=self.autocast_dtype)
            for it, (h, w), det in zip(batch, sizes, dets):
                req = requests[it.request]
                sx, sy = req.width / w, req.height / h
                for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
                    if score < self.settings.box_threshold:
                        continue
                    x0, y0, x1, y1 = box
                    results[it.request].append(Detection(
                        phrase=it.phrase_ids[label - 1],
                        x0=float(min(max(x0 * sx, 0.0), req.width)), y0=float(min(max(y0 * sy, 0.0), req.height)),
                        x1=float(min(max(x1 * sx, 0.0), req.width)), y1=float(min(max(y1 * sy, 0.0), req.height)),
                        score=float(min(max(score, 0.0), 1.0))))
        for r, dets in enumerate(results):
            dets.sort(key=lambda d: -d.score)
            results[r] = dets[: self.settings.max_boxes]
        return results


def _dir_revision(path: Path) -> str:
    weights = path / "model.safetensors"
    st = weights.stat()
    return f"{st.st_size}-{int(st.st_mtime)}"


def load_glip_teacher(spec: str, settings: GroundingSettings, device: str = "cpu",
                      precision: str = DEFAULT_PRECISION) -> Teacher:
    """Entry point for the generic teacher loader (spec: glip-t:PATH, glip-l:PATH or a dir)."""
    return GlipTeacher.load(spec, settings, device, autocast_dtype(device, precision))
