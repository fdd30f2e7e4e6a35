"""Decode web image bytes into the uint8 RGB array the teacher sees, and nothing else.

Pure functions (no Ray, no I/O): CPU workers call `decode_for_teacher` on the raw bytes of a
tar member and ship `DecodedImage.pixels` (a small contiguous array) to the GPU.

Decisions, each made once here:

- The pixel frame of the boxes is the full decoded image after EXIF orientation
  (`ImageOps.exif_transpose` semantics). `width`/`height` report that frame even when the
  teacher's pixels were decoded at reduced scale or resized.
- Refusal happens on the header: `Image.open` reads only the header, so a decompression bomb
  (declared `width * height > max_pixels`) is refused as `image_too_large` before any pixel
  is decoded. Pillow's own `DecompressionBombError` maps to the same status.
- Truncated files are refused (`decode_error`), never half-decoded: this module does not set
  `ImageFile.LOAD_TRUNCATED_IMAGES`, so a cut-off JPEG fails instead of yielding grey rows.
- Transparency is composited on white: web images with alpha are mostly logos and product
  cut-outs drawn for white pages, and the colour under fully transparent pixels is arbitrary
  (often black), which would show the teacher edges that nobody sees.
- Only raster formats common on the web are opened (`ALLOWED_FORMATS`); this keeps Pillow's
  rarer plugins (and EPS's external Ghostscript) away from untrusted bytes.
- Animated GIF/WebP: the first frame.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

from schemas.errors import describe_error
from schemas.rows import IMAGE_EXTENSIONS, Status
from teacher.resize import teacher_size

# Pillow format ids; a JPEG with a multi-picture (MPO) extension opens through "JPEG".
# AVIF counts only where this Pillow was built with it (see `_open_formats`).
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's MAX_IMAGE_PIXELS: about 0.25 GiB of 24-bit RGB.

_AVIF_BRANDS = (b"ftypavif", b"ftypavis")  # bytes 4..12 of an AVIF file: its ISOBMFF ftyp box
_ORIENTATION_TAG = 0x0112
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageRejected(Exception):
    """The image cannot be given to the teacher; `status` is the row status, `message` the why."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class DecodedImage:
    """The teacher's input plus the frame that boxes are reported in."""

    pixels: np.ndarray  # uint8 [h, w, 3] RGB, C-contiguous, already resized for the teacher
    width: int  # full decoded width after EXIF orientation: the pixel frame of the boxes
    height: int  # full decoded height after EXIF orientation
    exif_orientation: int  # 1..8; 1 when absent or invalid


def member_extension(name: str) -> str:
    """Lower-case text after the last dot of a tar member's base name ('' when there is none).

    The last suffix, not webdataset's "everything after the first dot": for `a.b.JPG` this
    gives `jpg`, the format hint the output tar keeps.
    """
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        return ""
    return base.rsplit(".", 1)[-1].lower()


def is_image_member(name: str) -> bool:
    """Whether a tar member name carries an image extension img2dataset (or a user) may write."""
    return member_extension(name) in IMAGE_EXTENSIONS


def decode_for_teacher(
    data: bytes,
    *,
    min_size: int = 800,
    max_size: int = 1333,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resize_rule: str = "transformers",
    fast: bool = False,
) -> DecodedImage:
    """Decode image bytes to RGB uint8 at the teacher's size; raise `ImageRejected` if impossible.

    By default the pixels are exactly what the backend's reference pipeline gives its model:
    the full image decoded, EXIF-oriented, alpha composited on white, then one PIL bilinear
    resize to `teacher_size(..., rule=resize_rule)`. `fast` trades that exactness for speed on
    photos much larger than the teacher input: JPEGs decode at 1/2, 1/4 or 1/8 scale (libjpeg
    DCT scaling) when the target is at least that much smaller, and large downscales go in two
    steps (Pillow's `reducing_gap`). `width` and `height` come from the header in either case.
    """
    if not data:
        raise ImageRejected(Status.DECODE_ERROR, "The image member is empty (0 bytes).")
    try:
        image = Image.open(io.BytesIO(data), formats=_open_formats())
    except Image.DecompressionBombError as exc:
        raise ImageRejected(
            Status.IMAGE_TOO_LARGE, f"The image header declares too many pixels; it was not decoded ({exc})."
        ) from exc
    except Image.UnidentifiedImageError as exc:
        if bytes(data[4:12]) in _AVIF_BRANDS and "AVIF" not in _open_formats():
            raise ImageRejected(
                Status.DECODE_ERROR,
                f"The bytes are an AVIF image, which this Pillow cannot decode (built without AVIF support; "
                f"it decodes {', '.join(_open_formats())}).",
            ) from exc
        raise ImageRejected(
            Status.DECODE_ERROR,
            f"The bytes are not an image in a supported format ({', '.join(_open_formats())}); "
            f"they start with {bytes(data[:16])!r}.",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any plugin may raise anything on hostile headers
        raise ImageRejected(Status.DECODE_ERROR, f"The image header is corrupt ({describe_error(exc)}).") from exc

    with image:
        stored_w, stored_h = image.size
        if stored_w < 1 or stored_h < 1:
            raise ImageRejected(Status.DECODE_ERROR, f"The image header declares an empty size {stored_w}x{stored_h}.")
        if stored_w * stored_h > max_pixels:
            raise ImageRejected(
                Status.IMAGE_TOO_LARGE,
                f"The image header declares {stored_w}x{stored_h} = {stored_w * stored_h:,} pixels, "
                f"more than the limit of {max_pixels:,}; it was not decoded.",
            )
        orientation = _exif_orientation(image)
        swapped = orientation in _SWAPS_AXES
        width, height = (stored_h, stored_w) if swapped else (stored_w, stored_h)
        target = teacher_size(width, height, min_size, max_size, resize_rule)
        try:
            if fast:
                image.draft("RGB", (target[1], target[0]) if swapped else target)
            pixels = _to_teacher_pixels(image, target, orientation, fast)
        except Image.DecompressionBombError as exc:
            raise ImageRejected(Status.IMAGE_TOO_LARGE, f"The image is too large to decode ({exc}).") from exc
        except MemoryError as exc:
            raise ImageRejected(
                Status.IMAGE_TOO_LARGE, f"Decoding the {stored_w}x{stored_h} image ran out of memory."
            ) from exc
        except Exception as exc:  # noqa: BLE001 - corrupt data raises OSError, ValueError, SyntaxError, ...
            raise ImageRejected(
                Status.DECODE_ERROR,
                f"The {image.format} image is truncated or corrupt and was not decoded ({describe_error(exc)}).",
            ) from exc
    return DecodedImage(pixels=pixels, width=width, height=height, exif_orientation=orientation)


@functools.cache
def _open_formats() -> tuple[str, ...]:
    """The allowed formats this Pillow can open (`Image.open` fails on an unregistered id).

    Pillow 11.3+ registers its AVIF plugin even when built without libavif; such a build
    identifies no AVIF file, so AVIF counts only where `features.check_module("avif")` holds.
    """
    Image.init()
    return tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN and (f != "AVIF" or _avif_decoder()))


def _avif_decoder() -> bool:
    try:
        return features.check_module("avif")
    except ValueError:  # a Pillow older than built-in AVIF: a third-party plugin registered it
        return True


def _exif_orientation(image: Image.Image) -> int:
    """EXIF Orientation (1..8) as `ImageOps.exif_transpose` reads it; 1 when absent or invalid."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - malformed EXIF from the web must not cost the pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_teacher_pixels(image: Image.Image, size: tuple[int, int], orientation: int, fast: bool) -> np.ndarray:
    """Load, normalise the mode, composite alpha on white, orient, then resize to `size` (w, h):
    the reference's order, so the one bilinear resize sees the image the reference resizes."""
    image.load()
    image = _normalise_mode(image)
    if image.mode == "RGBA":
        image = _composite_on_white(image)
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0 if fast else None)
    return np.array(image, dtype=np.uint8, order="C")  # a writable copy: torch.from_numpy wants one


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Reduce any mode to 'RGB', or 'RGBA' when the image has transparency to composite.

    Pillow's own conversion clips 16- and 32-bit integer pixels at 255 (a 16-bit PNG turns
    white), so those are rescaled here: integer modes as 16-bit data (divide by 257), float mode
    'F' as [0, 1] when its maximum is at most 1, else clipped to [0, 255].
    """
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(_high_bit_depth_to_uint8(image)).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("RGB")


def _high_bit_depth_to_uint8(image: Image.Image) -> np.ndarray:
    values = np.asarray(image).astype(np.float32)
    if image.mode == "F":
        scale = 255.0 if values.size and float(np.nanmax(values)) <= 1.0 else 1.0
        values = np.nan_to_num(values) * scale
    else:
        values = np.clip(values, 0, 65535) / 257.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _composite_on_white(image: Image.Image) -> Image.Image:
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image).convert("RGB")
