"""CLIP re-scoring (YOLO-World's recipe) on the tiny random CLIP: each score is the clamped cosine
that CLIPModel gives the checkpoint's processor inputs, crops are cut in the teacher image's
pixels, and batching changes nothing."""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from teacher.checkpoints import CheckpointError, local_revision
from teacher.clip.rescore import ClipRescorer, box_pixels, image_confidence, rescored
from teacher.clip.tiny import write_tiny_clip
from teacher.protocol import Detection, TeacherRequest

CAPTION = "a dog on the grass next to a red car and a dog"
SPANS = [(0, 5), (9, 18), (27, 36), (41, 46)]  # a dog, the grass, a red car, a dog


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    return str(write_tiny_clip(tmp_path_factory.mktemp("tiny-clip")))


@pytest.fixture(scope="module")
def rescorer(tiny_clip) -> ClipRescorer:
    return ClipRescorer(tiny_clip, device="cpu")


def noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@functools.lru_cache(maxsize=1)
def reference_model(checkpoint: str) -> tuple[CLIPProcessor, CLIPModel]:
    return CLIPProcessor.from_pretrained(checkpoint), CLIPModel.from_pretrained(checkpoint).eval()


def reference_score(checkpoint: str, image: np.ndarray, text: str) -> float:
    """The score computed by hand: CLIPModel's features of the processor's inputs, cosine, clamp."""
    processor, model = reference_model(checkpoint)
    inputs = processor(images=[image], text=[text], return_tensors="pt", input_data_format="channels_last")
    with torch.no_grad():
        img = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output[0]
        txt = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output[0]
    return float(torch.nn.functional.cosine_similarity(img, txt, dim=0).clamp(0.0, 1.0))


def requests_and_boxes() -> tuple[list[TeacherRequest], list[list[Detection]]]:
    """Two images at half the decoded size; the first has boxes (one degenerate, one 3 px high,
    two identical of the same text), the second none."""
    reqs = [TeacherRequest(noise(48, 64, 0), 128, 96, CAPTION, SPANS),
            TeacherRequest(noise(40, 40, 1), 80, 80, "an empty street " * 40, [(0, 15)])]
    dets = [[
        Detection(0, 10, 10, 60, 50, 0.9),   # a dog
        Detection(2, 64, 0, 128, 96, 0.5),   # a red car
        Detection(1, 30, 30, 30.4, 80, 0.4),  # the grass: rounds to no pixel column
        Detection(3, 10, 10, 60, 50, 0.7),   # a dog again (other span), the same crop
        Detection(1, 0, 40, 128, 46, 0.3),   # the grass: a crop 3 pixels high
    ], []]
    return reqs, dets


def test_scores_have_the_shapes_of_the_inputs_and_lie_in_0_1(rescorer):
    reqs, dets = requests_and_boxes()
    boxes, images = rescorer.score(reqs, dets)
    assert [len(b) for b in boxes] == [5, 0] and len(images) == 2
    assert all(0.0 <= s <= 1.0 for s in boxes[0] + images)
    assert boxes[0][2] == 0.0  # degenerate box
    assert min(boxes[0][:2] + boxes[0][3:] + images) > 0.0  # the tiny CLIP scores are not clamped away
    assert boxes[0][0] == pytest.approx(boxes[0][3], abs=1e-6)  # identical crops, identical phrases
    assert rescorer.score([], []) == ([], [])


def test_a_box_scores_what_clip_computes_by_hand(rescorer, tiny_clip):
    reqs, dets = requests_and_boxes()
    boxes, images = rescorer.score(reqs, dets)
    pixels = reqs[0].pixels
    assert boxes[0][0] == pytest.approx(reference_score(tiny_clip, pixels[5:25, 5:30], "a dog"), abs=1e-5)
    assert boxes[0][4] == pytest.approx(reference_score(tiny_clip, pixels[20:23, 0:64], "the grass"), abs=1e-5)
    assert images[0] == pytest.approx(reference_score(tiny_clip, pixels, CAPTION), abs=1e-5)


def test_boxes_are_scaled_from_the_decoded_frame_to_the_pixels(rescorer, tiny_clip):
    """The box covers the top-left quarter of the decoded 128x96 frame: 32x24 of the 64x48 pixels.
    Unscaled, it would cut the whole image, which CLIP scores differently."""
    req = TeacherRequest(noise(48, 64, 2), 128, 96, "a red car", [(0, 9)])
    boxes, _ = rescorer.score([req], [[Detection(0, 0, 0, 64, 48, 0.8)]])
    assert box_pixels(req.pixels, Detection(0, 0, 0, 64, 48, 0.8), 128, 96).shape == (24, 32, 3)
    right = reference_score(tiny_clip, req.pixels[:24, :32], "a red car")
    wrong = reference_score(tiny_clip, req.pixels, "a red car")
    assert abs(right - wrong) > 1e-3
    assert boxes[0][0] == pytest.approx(right, abs=1e-5)


def test_batch_size_does_not_change_the_scores(rescorer, tiny_clip):
    reqs, dets = requests_and_boxes()
    one = ClipRescorer(tiny_clip, device="cpu", batch_size=1).score(reqs, dets)
    many = rescorer.score(reqs, dets)
    assert np.allclose(one[0][0], many[0][0], atol=1e-5) and np.allclose(one[1], many[1], atol=1e-5)


def test_ids_and_revision(rescorer, tiny_clip):
    assert rescorer.rescorer_id == tiny_clip
    assert rescorer.revision == local_revision(tiny_clip)


def test_the_tiny_clip_is_the_same_for_a_seed(tiny_clip, tmp_path):
    again = write_tiny_clip(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (Path(tiny_clip) / "model.safetensors").read_bytes()


def test_checkpoints_that_cannot_load_say_why(tiny_clip, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ClipRescorer(str(tmp_path / "absent"), device="cpu")
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_clip, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(CheckpointError, match="has no weights"):
        ClipRescorer(str(no_weights), device="cpu")
    pickled = tmp_path / "pickled"
    shutil.copytree(no_weights, pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="only pickle weights"):
        ClipRescorer(str(pickled), device="cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="cannot load CLIP checkpoint"):
        ClipRescorer(str(broken), device="cpu")


def test_the_recipe_arithmetic():
    assert rescored(0.36, 0.25) == pytest.approx(0.3)
    assert image_confidence(0.16, [0.5, 0.7]) == pytest.approx(math.sqrt(0.16 * 0.6))
    assert image_confidence(0.9, []) == 0.0
