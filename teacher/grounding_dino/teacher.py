"""Default teacher backend: `transformers` zero-shot detectors of the Grounding DINO family.

The grounding semantics (ARCHITECTURE.md) are applied here on the model's token logits (not through
transformers' post-processing): phrases map to tokens by the tokenizer's offsets, a box's phrase
score is the mean token probability, then threshold, per-phrase NMS and top-K.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from teacher.checkpoints import read_json
from teacher.grounding import (
    cxcywh_to_xyxy,
    merge_detections,
    pack_best_phrases,
    phrase_scores,
    positive_map,
    select_from_best,
    unpack_best_phrases,
)
from teacher.grounding_dino.fast.host_sync import tensor_checks_skipped
from teacher.precision import autocast_dtype, precast_weights
from teacher.pretrained import load_pretrained
from teacher.prompts import Prompt, build_prompts
from teacher.protocol import DEFAULT_PRECISION, Detection, GroundingSettings, TeacherRequest

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class GroundingDinoTeacher:
    """Loads once per worker; `predict` grounds a batch of images with different captions."""

    def __init__(
        self,
        spec: str,
        settings: GroundingSettings = GroundingSettings(),
        *,
        device: str | None = None,
        allow_pickle: bool = False,
        fast: bool = True,
        revision: str | None = None,
        precision: str = DEFAULT_PRECISION,
    ) -> None:
        from transformers import AutoModelForZeroShotObjectDetection, AutoTokenizer

        self.settings = settings
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        loaded = load_pretrained(spec, "teacher", AutoModelForZeroShotObjectDetection, {"tokenizer": AutoTokenizer},
                                 device=self.device, allow_pickle=allow_pickle, revision=revision)
        self.model, self.tokenizer = loaded.model, loaded.parts["tokenizer"]
        path, is_dir = loaded.checkpoint.path, loaded.checkpoint.is_dir
        self.teacher_id = spec
        self.revision = loaded.revision
        self.max_text_len = int(getattr(self.model.config, "max_text_len", 256))
        proc = read_json(Path(path) / "preprocessor_config.json") if is_dir else {}
        mean = proc.get("image_mean", IMAGENET_MEAN)
        std = proc.get("image_std", IMAGENET_STD)
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255.0
        self.autocast_dtype = autocast_dtype(self.device, precision)
        self._device_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._local = threading.local()
        # On a GPU two callers keep it busy: one call's host work overlaps the other's forward.
        self.concurrent_calls = 2 if self.device.startswith("cuda") else 1
        self.fast_modules = 0
        fast_path = fast and self.device.startswith("cuda")
        # The fast path also skips transformers' tensor checks inside the forward: each one makes
        # the host wait for the GPU (teacher/grounding_dino/fast/host_sync.py).
        self.skip_tensor_checks = fast_path
        if fast_path:
            self.fast_modules = _install_fast_path(self.model)
            if self.autocast_dtype is not None:  # bf16 weights once, as autocast would cast them
                precast_weights(self.model, self.autocast_dtype)

    def _encode(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], list]:
        enc = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_text_len - 1,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping").tolist()
        # One trailing pad column: Grounding DINO drops the text block whose closing token sits in
        # the last column, which would make a caption's result depend on its batch neighbours.
        for name in ("input_ids", "attention_mask"):
            fill = (self.tokenizer.pad_token_id or 0) if name == "input_ids" else 0
            enc[name] = torch.nn.functional.pad(enc[name], (0, 1), value=fill)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, offsets

    def _pad_images(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad uint8 HxWx3 images into one host batch (this thread's staging buffer) and their sizes."""
        h = max(im.shape[0] for im in images)
        w = max(im.shape[1] for im in images)
        batch = self._host_buffer(len(images) * h * w * 3).view(len(images), h, w, 3)
        for i, im in enumerate(images):
            ih, iw = im.shape[0], im.shape[1]
            batch[i, :ih, :iw] = torch.from_numpy(im if im.flags.writeable else im.copy())
            batch[i, :ih, iw:] = 0  # only the padding is zeroed: the buffer holds an earlier batch
            batch[i, ih:] = 0
        return batch, torch.tensor([[im.shape[0], im.shape[1]] for im in images])

    def _host_buffer(self, numel: int) -> torch.Tensor:
        """A reused (pinned, on CUDA) staging buffer per calling thread: pinning a fresh one per
        batch costs more than the copy. Safe to reuse: a thread's `predict` waits for its own
        results, which the stream orders after the upload, before it pads its next batch."""
        buf = getattr(self._local, "staging", None)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=torch.uint8, pin_memory=self.device.startswith("cuda"))
            self._local.staging = buf
        return buf[:numel]

    def _device_pass(self, batch: torch.Tensor, small: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        """Upload, forward, phrase scores and each box's best phrase; the packed [B, Q, 6] result
        (score, phrase, x0, y0, x1, y1) is copied back without waiting, with an event to wait on.
        `small` holds input_ids, attention_mask, sizes, pos, valid and scale (pinned on CUDA, so
        their uploads never wait for the other caller's forward)."""
        dev = self.device
        up = {name: t.to(dev, non_blocking=True) for name, t in small.items()}
        device_batch = batch.to(dev, non_blocking=True)
        h, w = batch.shape[1], batch.shape[2]
        rows = torch.arange(h, device=dev)[None, :, None] < up["sizes"][:, 0, None, None]
        cols = torch.arange(w, device=dev)[None, None, :] < up["sizes"][:, 1, None, None]
        inputs = {
            "input_ids": up["input_ids"],
            "attention_mask": up["attention_mask"],
            "token_type_ids": torch.zeros_like(up["input_ids"]),
            "pixel_values": ((device_batch.permute(0, 3, 1, 2).float() - self._mean) / self._std).contiguous(),
            "pixel_mask": (rows & cols).long(),
        }
        autocast = torch.autocast("cuda", dtype=self.autocast_dtype) if self.autocast_dtype is not None else contextlib.nullcontext()
        checks = tensor_checks_skipped(self.model) if self.skip_tensor_checks else contextlib.nullcontext()
        with autocast, checks:
            out = self.model(**inputs)
        logits, boxes = out.logits.float(), out.pred_boxes.float()
        width = logits.shape[-1]  # the model pads token logits to max_text_len
        pos = torch.nn.functional.pad(up["pos"], (0, max(0, width - up["pos"].shape[-1])))[..., :width]
        scores = phrase_scores(logits, pos).masked_fill(~up["valid"][:, None, :], -1.0)
        packed = pack_best_phrases(scores, cxcywh_to_xyxy(boxes) * up["scale"])
        if not dev.startswith("cuda"):
            return packed, None
        host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(dev))
        return host, done

    def _device_scope(self) -> contextlib.AbstractContextManager:
        """Make the teacher's GPU current: a new calling thread starts on GPU 0, and events and
        streams belong to the current GPU."""
        return torch.cuda.device(self.device) if self.device.startswith("cuda") else contextlib.nullcontext()

    def _drain(self) -> None:
        if self.device.startswith("cuda"):
            try:
                torch.cuda.current_stream(self.device).synchronize()
            except RuntimeError:
                log.warning("could not wait for the GPU after a failed batch", exc_info=True)

    @torch.inference_mode()
    def predict(self, requests: Sequence[TeacherRequest]) -> list[list[Detection]]:
        """Safe to call from `concurrent_calls` threads at once: only tokenising and the device
        pass are serialised, so one call's host work (prompts, padding, NMS) overlaps another's
        forward."""
        s = self.settings
        jobs: list[tuple[int, Prompt]] = []
        found: list[list[tuple]] = [[] for _ in requests]
        prompts_per_request = [0] * len(requests)
        with self._tokenizer_lock:  # a fast tokenizer's truncation and padding settings are shared state
            for ri, req in enumerate(requests):
                for prompt in build_prompts(req.caption, req.spans, self.tokenizer, mode=s.prompt_mode, max_tokens=self.max_text_len - 1):
                    jobs.append((ri, prompt))
            text, offsets = self._encode([p.text for _, p in jobs]) if jobs else ({}, [])
        if jobs:
            n_tokens = text["input_ids"].shape[-1]
            max_phrases = max(len(p.spans) for _, p in jobs)
            pos = torch.zeros((len(jobs), max_phrases, n_tokens))
            valid = torch.zeros((len(jobs), max_phrases), dtype=torch.bool)
            scale = torch.empty((len(jobs), 1, 4))
            for j, (ri, prompt) in enumerate(jobs):
                pos[j, : len(prompt.spans)] = positive_map(offsets[j], prompt.spans, n_tokens)
                valid[j, : len(prompt.spans)] = True
                req = requests[ri]
                scale[j, 0] = torch.tensor([req.width, req.height, req.width, req.height])
            batch, sizes = self._pad_images([requests[ri].pixels for ri, _ in jobs])
            small = dict(text, sizes=sizes, pos=pos, valid=valid, scale=scale)
            if self.device.startswith("cuda"):
                small = {name: t.pin_memory() for name, t in small.items()}
            with self._device_lock, self._device_scope():
                try:
                    packed, done = self._device_pass(batch, small)
                except BaseException as exc:
                    # Free the failed forward's activations before the next caller's forward
                    # runs, and let the upload from this thread's staging buffer finish.
                    traceback.clear_frames(exc.__traceback__)
                    self._drain()
                    raise
            if done is not None:
                done.synchronize()
            best, phrase, px = unpack_best_phrases(packed)
            for j, (ri, prompt) in enumerate(jobs):
                prompts_per_request[ri] += 1
                req = requests[ri]
                dets = select_from_best(
                    best[j], phrase[j], px[j], width=req.width, height=req.height,
                    box_threshold=s.box_threshold, nms_iou=s.nms_iou, max_boxes=s.max_boxes,
                )
                found[ri].extend((prompt.phrase_ids[p], *rest) for p, *rest in dets)
        results = []
        for ri, dets in enumerate(found):
            if prompts_per_request[ri] > 1:
                dets = merge_detections(dets, nms_iou=s.nms_iou, max_boxes=s.max_boxes)
            results.append([Detection(*d) for d in dets])
        return results


def _install_fast_path(model: torch.nn.Module) -> int:
    """Swap in the fused deformable-attention kernel; fall back to eager when unavailable."""
    try:
        from teacher.grounding_dino.fast_attention import install_fast_attention
    except ImportError as exc:
        log.warning("fast deformable attention unavailable (%s); using the eager path", exc)
        return 0
    return install_fast_attention(model)
