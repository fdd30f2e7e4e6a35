"""Reference parity: by default the Grounding DINO teacher sees exactly what `transformers`' own
processor for the checkpoint gives the model: the same pixels, the same tokens, the same box
conversion. Checked on real Flickr30k photos in every shape class, with the tiny teacher and its
processor (`AutoProcessor.from_pretrained` of the same directory).

The reference is the processor's PIL backend, the one `transformers` uses without torchvision
(and the one the original Grounding DINO's PIL transforms match). Where the project differs on
purpose, the test says so and compares with the reference given the input the project means:
- EXIF orientation is applied (the processor resizes the stored pixels as they lie), so the
  boxes are in the frame a viewer sees; compared with the processor on the transposed photo.
- Transparency is composited on white (the processor drops the alpha channel, showing whatever
  colour lies under transparent pixels); compared with the processor on the composited photo.
- Grayscale is converted to RGB (the processor refuses a one-channel image).
- Token ids carry one extra trailing pad column (attention 0): Grounding DINO drops the text
  block whose closing token sits in the last column.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from pipeline.stages.images import decode_for_teacher
from pipeline.stages.reader import iter_samples
from teacher.grounding import cxcywh_to_xyxy
from teacher.grounding_dino.teacher import GroundingDinoTeacher
from teacher.protocol import GroundingSettings, TeacherRequest
from tests.project import SHARED

FLICKR = SHARED / "flickr30k_19img" / "flickr30k_entities_19img-000000.tar"
CAPTION = "A man in a blue hard hat stands in an intersection while holding a flag ."
SPANS = [(0, 5), (9, 24), (41, 56), (71, 77)]


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    if not FLICKR.exists():
        pytest.skip(f"needs the real Flickr30k photos at {FLICKR} (../shared/data is absent)")
    images = [Image.open(io.BytesIO(s.image)).convert("RGB") for s in iter_samples(str(FLICKR))]
    landscape = next(im for im in images if im.width > im.height)
    portrait = next(im for im in images if im.height > im.width)
    return {"landscape": landscape, "portrait": portrait}


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, **kwargs)
    return out.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _with_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[: rgba.height // 3] = 0  # a transparent band, and a soft edge below it
    alpha[rgba.height // 3: rgba.height // 2] = 128
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def _on_white(image: Image.Image) -> Image.Image:
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image).convert("RGB")


def _cases(photos: dict[str, Image.Image]) -> dict[str, tuple[bytes, Image.Image]]:
    """Shape class -> (the bytes the pipeline reads, the image the reference processor is given)."""
    land, port = photos["landscape"], photos["portrait"]
    big = land.resize((3000, 2250), Image.Resampling.BICUBIC)
    small = land.resize((200, 150), Image.Resampling.BICUBIC)
    panorama = land.crop((0, 0, land.width, round(land.width * 188 / 500)))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown rotated 90 degrees clockwise
    sideways = land.transpose(Image.Transpose.ROTATE_90)
    gray = land.convert("L")
    alpha = _with_alpha(land)
    return {
        "upscaled photo, shrunk by the teacher": (_jpeg(big), Image.open(io.BytesIO(_jpeg(big)))),
        "photo smaller than the teacher input": (_jpeg(land), Image.open(io.BytesIO(_jpeg(land)))),
        "tiny photo, enlarged": (_jpeg(small), Image.open(io.BytesIO(_jpeg(small)))),
        "panorama past the long-side limit": (_jpeg(panorama), Image.open(io.BytesIO(_jpeg(panorama)))),
        "portrait": (_jpeg(port), Image.open(io.BytesIO(_jpeg(port)))),
        "EXIF-rotated (oriented first, on purpose)": (
            _jpeg(sideways, exif=exif), ImageOps.exif_transpose(Image.open(io.BytesIO(_jpeg(sideways, exif=exif))))),
        "grayscale (made RGB, on purpose)": (_jpeg(gray), Image.open(io.BytesIO(_jpeg(gray))).convert("RGB")),
        "PNG with alpha (on white, on purpose)": (_png(alpha), _on_white(Image.open(io.BytesIO(_png(alpha))))),
    }


class _Capture:
    """The model's inputs and outputs on the teacher's own path (a forward hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.kwargs: dict = {}
        self.output = None
        model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output) -> None:
        self.kwargs, self.output = kwargs, output


def test_the_teacher_sees_what_the_reference_processor_gives_the_model(tiny_teacher, photos) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_teacher)
    teacher = GroundingDinoTeacher(tiny_teacher, GroundingSettings(box_threshold=0.0), device="cpu")
    seen = _Capture(teacher.model)
    for name, (data, reference_image) in _cases(photos).items():
        decoded = decode_for_teacher(data)
        teacher.predict([TeacherRequest(decoded.pixels, decoded.width, decoded.height, CAPTION, SPANS)])
        ref = processor(images=reference_image, text=CAPTION, return_tensors="pt")
        ours = seen.kwargs
        assert (decoded.width, decoded.height) == reference_image.size, name
        assert ours["pixel_values"].shape == ref["pixel_values"].shape, name
        assert torch.allclose(ours["pixel_values"], ref["pixel_values"], atol=1e-4), (
            name, (ours["pixel_values"] - ref["pixel_values"]).abs().max().item())
        assert torch.equal(ours["pixel_mask"], ref["pixel_mask"]), name
        n = ref["input_ids"].shape[1]
        assert torch.equal(ours["input_ids"][:, :n], ref["input_ids"]), name
        assert torch.equal(ours["attention_mask"][:, :n], ref["attention_mask"]), name
        assert ours["attention_mask"][:, n:].sum() == 0 and ours["input_ids"].shape[1] == n + 1, name
        # Box conversion: the reference's post-processing of the same model output, in the frame.
        target = [(decoded.height, decoded.width)]
        converted = processor.post_process_grounded_object_detection(
            seen.output, ours["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=target)[0]["boxes"]
        frame = torch.tensor([decoded.width, decoded.height] * 2, dtype=torch.float32)
        assert torch.allclose(cxcywh_to_xyxy(seen.output.pred_boxes[0].float()) * frame, converted, atol=1e-3), name


def test_the_reference_differs_where_the_project_differs_on_purpose(photos) -> None:
    """The differences named above are real: the processor on the raw inputs gives other pixels."""
    land = photos["landscape"]
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = _jpeg(land.transpose(Image.Transpose.ROTATE_90), exif=exif)
    decoded = decode_for_teacher(sideways)
    assert (decoded.width, decoded.height) == land.size  # the frame a viewer sees
    assert Image.open(io.BytesIO(sideways)).size == (land.height, land.width)  # what the processor would resize
    alpha = _with_alpha(land)
    on_white = decode_for_teacher(_png(alpha), min_size=land.height, max_size=land.width).pixels
    dropped = np.asarray(alpha.convert("RGB"))
    assert on_white.shape == dropped.shape and (np.abs(on_white.astype(int) - dropped).max() > 50)


def test_fast_decoding_changes_the_pixels_of_large_photos_only(photos) -> None:
    """The opt-in trade: same frame and size, other pixels on a large JPEG; identical on a photo
    smaller than the teacher input (nothing to draft or to shrink in two steps)."""
    land = photos["landscape"]
    big = _jpeg(land.resize((3000, 2250), Image.Resampling.BICUBIC))
    exact, fast = decode_for_teacher(big), decode_for_teacher(big, fast=True)
    assert (exact.width, exact.height, exact.pixels.shape) == (fast.width, fast.height, fast.pixels.shape)
    assert np.abs(exact.pixels.astype(int) - fast.pixels).max() > 0
    small = _jpeg(land)
    assert np.array_equal(decode_for_teacher(small).pixels, decode_for_teacher(small, fast=True).pixels)
