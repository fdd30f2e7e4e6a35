"""pipeline.stages.images: every hostile image gives its status or a correct teacher input."""

from __future__ import annotations

import io
import random
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin

from pipeline.stages.images import DecodedImage, ImageRejected, decode_for_teacher, is_image_member, member_extension
from pipeline.tools.sample_shards import draw_picture
from schemas.rows import Status
from teacher.resize import teacher_size
from tests.hostile_corpus import BOMB_SIZE, bomb_png, hostile_samples

IMAGE_SAMPLES = [s for s in hostile_samples() if s.image_status is not None]


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


# -- the hostile corpus ---------------------------------------------------------------------


@pytest.mark.parametrize("sample", IMAGE_SAMPLES, ids=[s.key for s in IMAGE_SAMPLES])
def test_hostile_image(sample):
    if sample.image_status != Status.OK.value:
        with pytest.raises(ImageRejected) as info:
            decode_for_teacher(sample.image)
        assert info.value.status.value == sample.image_status
        message = info.value.message
        assert message and "\n" not in message and message.endswith(".")
        return
    decoded = decode_for_teacher(sample.image)
    assert (decoded.width, decoded.height) == sample.size
    assert decoded.exif_orientation == sample.orientation
    tw, th = teacher_size(decoded.width, decoded.height)
    assert decoded.pixels.shape == (th, tw, 3)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.flags.c_contiguous and decoded.pixels.flags.writeable


def test_decoding_does_not_set_load_truncated_images():
    truncated = next(s for s in hostile_samples() if s.key == "hostile_truncated_jpeg")
    with pytest.raises(ImageRejected):
        decode_for_teacher(truncated.image)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_html_message_shows_the_bytes():
    html = next(s for s in hostile_samples() if s.key == "hostile_html_as_jpg")
    with pytest.raises(ImageRejected) as info:
        decode_for_teacher(html.image)
    assert info.value.status is Status.DECODE_ERROR
    assert "<!DOCTYPE html>" in info.value.message


def test_format_outside_the_allowed_set_is_refused():
    ppm = _encode(Image.new("RGB", (4, 4), (1, 2, 3)), "PPM")
    assert Image.open(io.BytesIO(ppm)).size == (4, 4)  # Pillow itself would open it
    with pytest.raises(ImageRejected) as info:
        decode_for_teacher(ppm)
    assert info.value.status is Status.DECODE_ERROR


def test_gif_first_frame():
    frames = [Image.new("RGB", (20, 10), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    decoded = decode_for_teacher(out.getvalue(), min_size=10, max_size=20)
    assert (decoded.width, decoded.height) == (20, 10)
    assert tuple(decoded.pixels.reshape(-1, 3).mean(axis=0).round()) == (255, 0, 0)


# -- decompression bombs --------------------------------------------------------------------


def test_bomb_beyond_pillow_limit_is_too_large():
    with pytest.raises(ImageRejected) as info:
        decode_for_teacher(bomb_png(*BOMB_SIZE))
    assert info.value.status is Status.IMAGE_TOO_LARGE


def test_header_check_refuses_before_any_pixel_is_decoded(monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    # Between Pillow's warning and error thresholds: only our header check stops it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageRejected) as info:
            decode_for_teacher(bomb_png(10_000, 10_000))
    assert info.value.status is Status.IMAGE_TOO_LARGE
    assert "10000x10000" in info.value.message
    jpeg = _encode(Image.new("RGB", (100, 100)), "JPEG")
    with pytest.raises(ImageRejected) as info:
        decode_for_teacher(jpeg, max_pixels=9_999)
    assert info.value.status is Status.IMAGE_TOO_LARGE


def test_image_at_the_pixel_limit_decodes():
    jpeg = _encode(Image.new("RGB", (100, 100)), "JPEG")
    assert decode_for_teacher(jpeg, max_pixels=10_000).width == 100


# -- pixel content --------------------------------------------------------------------------


def _decode_small(data: bytes) -> DecodedImage:
    return decode_for_teacher(data, min_size=32, max_size=64)


def test_exif_orientation_matches_exif_transpose():
    sample = next(s for s in hostile_samples() if s.key == "hostile_exif_rotated_jpeg")
    decoded = decode_for_teacher(sample.image)
    h = decoded.pixels.shape[0]
    top, bottom = decoded.pixels[: h // 4].reshape(-1, 3).mean(0), decoded.pixels[-h // 4 :].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50  # the stored left (red) half is on top after 90 degrees clockwise
    assert bottom[2] > 200 and bottom[0] < 50
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(sample.image))).convert("RGB")
    assert reference.size == (decoded.width, decoded.height)
    expected = np.asarray(reference.resize(decoded.pixels.shape[1::-1], Image.Resampling.BILINEAR), dtype=np.int16)
    assert np.abs(expected - decoded.pixels).mean() < 1.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_exif_transpose(orientation):
    picture = draw_picture(random.Random(orientation), 48, 32)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(picture, "PNG", exif=exif.tobytes())
    decoded = decode_for_teacher(data, min_size=32, max_size=48)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert decoded.exif_orientation == orientation
    assert decoded.pixels.shape == reference.shape
    assert np.array_equal(decoded.pixels, reference)


def test_invalid_orientation_is_treated_as_upright():
    exif = Image.Exif()
    exif[0x0112] = 9
    decoded = _decode_small(_encode(Image.new("RGB", (64, 32)), "JPEG", exif=exif.tobytes()))
    assert (decoded.width, decoded.height, decoded.exif_orientation) == (64, 32, 1)


@pytest.mark.parametrize("key", ["hostile_rgba_png", "hostile_la_png", "hostile_palette_transparent_png"])
def test_transparency_is_composited_on_white(key):
    sample = next(s for s in hostile_samples() if s.key == key)
    decoded = decode_for_teacher(sample.image)
    assert tuple(decoded.pixels[0, 0]) == (255, 255, 255)  # transparent corner (black underneath for RGBA/LA)


def test_16bit_png_is_scaled_not_clipped():
    sample = next(s for s in hostile_samples() if s.key == "hostile_16bit_png")
    assert Image.open(io.BytesIO(sample.image)).mode.startswith("I")
    pixels = decode_for_teacher(sample.image).pixels.astype(int)
    assert pixels[:, 0].max() <= 2 and pixels[:, -1].min() >= 253
    assert 120 <= pixels.mean() <= 135  # a full ramp, not saturated white


@pytest.mark.parametrize("key", ["hostile_grayscale_jpeg", "hostile_bilevel_png", "hostile_16bit_png"])
def test_gray_inputs_become_three_equal_channels(key):
    sample = next(s for s in hostile_samples() if s.key == key)
    pixels = decode_for_teacher(sample.image).pixels
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2])


def test_cmyk_colours_survive():
    picture = Image.new("RGB", (64, 64), (200, 30, 40))
    decoded = _decode_small(_encode(picture.convert("CMYK"), "JPEG", quality=95))
    assert np.abs(decoded.pixels.reshape(-1, 3).mean(0) - (200, 30, 40)).max() < 6


def test_one_pixel_image_is_upsampled_to_one_colour():
    decoded = decode_for_teacher(_encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"))
    assert (decoded.width, decoded.height) == (1, 1)
    assert decoded.pixels.shape == (800, 800, 3)
    assert (decoded.pixels == (10, 200, 30)).all()


def test_no_resize_when_already_at_teacher_size():
    picture = draw_picture(random.Random(5), 1000, 800)
    data = _encode(picture, "PNG")
    assert np.array_equal(decode_for_teacher(data).pixels, np.asarray(picture))


# -- fast decoding: JPEG draft (reduced-scale decoding) -------------------------------------


@pytest.mark.parametrize(("size", "orientation"), [((4000, 3000), 1), ((3000, 4000), 6), ((3300, 1700), 1)])
def test_draft_keeps_the_frame_and_the_pixels(monkeypatch, size, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(draw_picture(random.Random(7), *size), "JPEG", quality=90, exif=exif.tobytes())
    drafted_sizes = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, requested):
        result = original_draft(self, mode, requested)
        drafted_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    drafted = decode_for_teacher(data, fast=True)
    full = decode_for_teacher(data)
    stored_w, stored_h = size
    assert drafted_sizes and drafted_sizes[0][0] < stored_w  # decoded at reduced scale
    assert drafted_sizes[0][0] >= drafted.pixels.shape[1 if orientation == 1 else 0]  # never below the target
    assert (drafted.width, drafted.height) == (full.width, full.height)
    expected_frame = (stored_h, stored_w) if orientation == 6 else (stored_w, stored_h)
    assert (drafted.width, drafted.height) == expected_frame
    assert drafted.pixels.shape == full.pixels.shape
    assert np.abs(drafted.pixels.astype(np.int16) - full.pixels).mean() < 1.5


# -- member names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ext", "is_image"),
    [
        ("000000001.jpg", "jpg", True),
        ("000000001.JPEG", "jpeg", True),
        ("dir/000000001.webp", "webp", True),
        ("a.b.PNG", "png", True),
        ("000000001.json", "json", False),
        ("000000001.txt", "txt", False),
        ("noext", "", False),
        ("dir.d/noext", "", False),
    ],
)
def test_member_extension(name, ext, is_image):
    assert member_extension(name) == ext
    assert is_image_member(name) is is_image
