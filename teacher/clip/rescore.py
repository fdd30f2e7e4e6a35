"""CLIP re-scoring of teacher boxes, YOLO-World's recipe for pseudo-labels from image-text pairs.

YOLO-World (arXiv 2401.17270, appendix "Automatic Labeling on Large-scale Image-Text Data") takes
GLIP-L's region-text proposals {B_i, t_i, c_i} and, with a pre-trained CLIP:

1. "we forward the image I with its caption T into CLIP and obtain the image-text similarity
   score s^img";
2. "we crop the region images from the input image according to the region boxes {B_i}. Then we
   forward the cropped images along with their texts {t_i} into CLIP and obtain the region-text
   similarity S^r = {s^r_i}";
3. rescores each box as c~_i = sqrt(c_i * s^r_i), NMS per text at IoU 0.5, then drops boxes under
   0.3;
4. computes "the image-level region-text scores s^region by averaging the kept region-text
   scores", and keeps the image when sqrt(s^img * s^region) is larger than 0.3.

This module computes s^r for every box and s^img for every image (`ClipRescorer.score`); `rescored`
and `image_confidence` are the arithmetic of steps 3 and 4. Thresholds and NMS are left to the
caller: the paper says they "are empirically set according to the part of labeled results".

What the paper leaves open, and what is done here:

- "Similarity" is the cosine of CLIP's projected image and text embeddings, clamped to [0, 1].
  A softmax cannot be meant for s^img: the image is compared with one text, its caption, and a
  softmax over one candidate is 1 for every image; over the image's own nouns it would give the
  box of a caption's only noun 1 whatever the crop shows. The thresholds fit raw cosines: with
  c_i <= 1 a box survives only if s^r_i > 0.09 (0.3 squared), and an image only if the geometric
  mean of s^img and s^region exceeds 0.3; CLIP ViT-B/32 scores matched image-text pairs at about
  0.3 in this cosine (LAION-400M kept pairs above 0.3 by the same measure), so 0.3 separates
  well-matched pairs from the rest, the paper's "filter the low-relevance pseudo annotations and
  images". Logit-scaled (x100) scores would pass every box, and CLIPScore's 2.5 x cosine nearly
  every image. Negative cosines (unrelated pairs) become 0, so the square roots stay real.
- The crop is the box's pixels, tight, cut from the image the teacher saw (the request's pixels,
  the resized copy of the decoded image that a teacher worker holds; boxes are scaled from the
  decoded frame to it), then the checkpoint's own CLIP image processor
  (shortest-edge resize and centre crop, as CLIP saw its training images). No context padding or
  squashing: the paper says only "crop".
- A box's text is its noun phrase as it appears in the caption, without a prompt template: the
  paper forwards "their texts {t_i}", the same nouns GLIP was given.
- The caption goes in whole, cut to CLIP's 77 tokens by the tokenizer (end-of-text kept).
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import numpy as np
import torch

from teacher.precision import autocast_dtype
from teacher.pretrained import load_pretrained
from teacher.protocol import DEFAULT_PRECISION, Detection, TeacherRequest


def rescored(score: float, clip_score: float) -> float:
    """A box's new score, sqrt(teacher score x CLIP region-text score): a box needs both the
    teacher's and CLIP's support."""
    return math.sqrt(score * clip_score)


def image_confidence(image_text_score: float, kept_clip_scores: Sequence[float]) -> float:
    """sqrt(s^img x mean s^r over the boxes kept after rescoring, NMS and the box threshold); 0.0
    without kept boxes, as such an image has no region-text pair to train on."""
    if not kept_clip_scores:
        return 0.0
    return math.sqrt(image_text_score * sum(kept_clip_scores) / len(kept_clip_scores))


def box_pixels(pixels: np.ndarray, det: Detection, width: int, height: int) -> np.ndarray | None:
    """The pixels of a box given in the `width` x `height` frame, cut from `pixels` (that frame,
    resized); None when the box rounds to no pixel. Edges round to the nearest pixel boundary."""
    h, w = pixels.shape[:2]
    sx, sy = w / width, h / height

    def edge(v: float, scale: float, size: int) -> int:
        return min(max(math.floor(v * scale + 0.5), 0), size)

    x0, x1 = edge(det.x0, sx, w), edge(det.x1, sx, w)
    y0, y1 = edge(det.y0, sy, h), edge(det.y1, sy, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return pixels[y0:y1, x0:x1]


class ClipRescorer:
    """Loads a CLIP checkpoint once; `score` gives the region-text and image-text scores of
    teacher outputs."""

    def __init__(self, spec: str, *, device: str | None = None, batch_size: int = 64, allow_pickle: bool = False,
                 revision: str | None = None) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        loaded = load_pretrained(
            spec, "CLIP", CLIPModel, {"tokenizer": AutoTokenizer, "image_processor": AutoImageProcessor},
            device=self.device, allow_pickle=allow_pickle, revision=revision,
            fix="give a directory with config.json, safetensors weights, tokenizer and preprocessor_config.json "
                "(python -m teacher.clip.tiny DIR writes a tiny one), an s3:// prefix, or a Hugging Face id "
                "reachable from this machine")
        self.model = loaded.model
        self.tokenizer, self.image_processor = loaded.parts["tokenizer"], loaded.parts["image_processor"]
        self.rescorer_id = spec
        self.revision = loaded.revision
        self.max_text_len = int(self.model.config.text_config.max_position_embeddings)
        self.autocast_dtype = autocast_dtype(self.device, DEFAULT_PRECISION)

    @torch.no_grad()
    def score(
        self, requests: Sequence[TeacherRequest], detections: Sequence[Sequence[Detection]]
    ) -> tuple[list[list[float]], list[float]]:
        """(clip_score per box of each request, image_text_score per request).

        Each box's crop is scored against its phrase, each whole image against its caption;
        a box that rounds to no pixel scores 0.0. Every distinct text is encoded once per call."""
        if len(requests) != len(detections):
            raise ValueError(f"{len(requests)} requests but {len(detections)} detection lists")
        images: list[np.ndarray] = []
        text_of_image: list[int] = []
        slot_of_image: list[tuple[int, int]] = []  # (request, box); box -1 is the whole image
        texts: dict[str, int] = {}
        for ri, (req, dets) in enumerate(zip(requests, detections)):
            images.append(req.pixels)
            text_of_image.append(texts.setdefault(req.caption, len(texts)))
            slot_of_image.append((ri, -1))
            for bi, det in enumerate(dets):
                crop = box_pixels(req.pixels, det, req.width, req.height)
                if crop is None:
                    continue
                start, end = req.spans[det.phrase]
                images.append(crop)
                text_of_image.append(texts.setdefault(req.caption[start:end], len(texts)))
                slot_of_image.append((ri, bi))
        box_scores = [[0.0] * len(dets) for dets in detections]
        image_scores = [0.0] * len(requests)
        if not images:
            return box_scores, image_scores
        text_emb = self._embed_texts(list(texts))
        image_emb = self._embed_images(images)
        sims = (image_emb * text_emb[torch.tensor(text_of_image)]).sum(-1).clamp(0.0, 1.0).tolist()
        for (ri, bi), sim in zip(slot_of_image, sims):
            if bi < 0:
                image_scores[ri] = sim
            else:
                box_scores[ri][bi] = sim
        return box_scores, image_scores

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on a GPU (`teacher.precision.autocast_dtype`), else nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype)

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Unit-norm fp32 text embeddings on the host, `batch_size` texts per forward."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_text_len, return_tensors="pt")
            with self.autocast():
                feats = self.model.get_text_features(
                    input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
                ).pooler_output
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    def _embed_images(self, images: list[np.ndarray]) -> torch.Tensor:
        """Unit-norm fp32 image embeddings on the host, `batch_size` images per forward, each
        prepared by the checkpoint's image processor."""
        out = []
        for i in range(0, len(images), self.batch_size):
            # channels_last said outright: a crop 1 or 3 pixels high would otherwise pass for CHW.
            pixel_values = self.image_processor(
                images=images[i:i + self.batch_size], return_tensors="pt", input_data_format="channels_last"
            )["pixel_values"]
            with self.autocast():
                feats = self.model.get_image_features(pixel_values=pixel_values.to(self.device)).pooler_output
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)
