"""A shard of hostile web input, with the status each sample should end with.

`write_hostile_shard(path)` writes one img2dataset-like tar and returns {key: expected status}.
`hostile_samples()` gives the same samples with the facts a decoding test checks (decoded
size, EXIF orientation). `truncate_tar` cuts a tar to simulate a partial download.

Expected statuses come in two kinds:
- Image and caption facts that `pipeline.stages.images` decides (decode_error, image_too_large,
  decoded sizes): tested directly in tests/pipeline/test_images.py.
- Facts that depend on the shard reader and the caption parser (which member names make a
  key, how `.txt` bytes are decoded, what a duplicate key becomes). Those samples carry
  `reader_dependent=True` and a `note` saying what is assumed. The assumptions are those of
  pipeline/reader.py when this was written: keys split at the first dot of the file name
  (webdataset's convention), a later repeat of a key becomes its own row keyed `KEY#dup1`,
  `.txt` is decoded as UTF-8 with errors replaced, an empty image member is still an image
  member. If the reader changes, change the expectations here with it.

Every "ok" caption has plain noun phrases ("a red car"), so "ok" does not hinge on the parser.
Generation takes well under a second: the images are flat colours or small drawings.
"""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import tarfile
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, features

from pipeline.tools.sample_shards import tar_info
from schemas.rows import IMAGE_EXTENSIONS, Status

OK_CAPTION = "a red car parked next to a white house"
DUPLICATE_KEY = "hostile_duplicate"
BOMB_SIZE = (30_000, 30_000)

# A real 24x16 AVIF (flat colour 200, 30, 40), stored so that the corpus does not need an AVIF
# encoder. Whether it decodes depends on the Pillow build: AVIF_STATUS is what it should give.
AVIF_24X16 = bytes.fromhex(
    "00000020667479706176696600000000617669666d6966316d6961664d413142000000eb6d6574610000000000000021"
    "68646c72000000000000000070696374000000000000000000000000000000000e7069746d0000000000010000001e69"
    "6c6f63000000004400000100010000000100000113000000290000002869696e660000000000010000001a696e666502"
    "0000000001000061763031436f6c6f72000000006a697072700000004b6970636f000000146973706500000000000000"
    "1800000010000000107069786900000000030808080000000c6176314381000c0000000013636f6c726e636c78000100"
    "0d0006800000001769706d61000000000000000100010401028304000000316d64617412000a091810efed1010d06840"
    "321a1787878621849249265000000057d71d8bc0cd9bfe4a40e63fa0"
)
AVIF_STATUS = Status.OK.value if features.check("avif") else Status.DECODE_ERROR.value


@dataclass(frozen=True)
class HostileSample:
    """One sample: its tar members and what a correct pipeline reports for it."""

    key: str  # the key the reader should report
    members: tuple[tuple[str, bytes], ...]  # (member name, bytes) in tar order
    status: str  # expected row status (a schemas.Status value)
    size: tuple[int, int] | None = None  # expected (width, height) when the image decodes
    orientation: int = 1  # expected EXIF orientation when the image decodes
    image_status: str | None = None  # what decode_for_teacher alone gives; None when no image member
    reader_dependent: bool = False
    note: str = ""

    @property
    def image(self) -> bytes | None:
        for name, data in self.members:
            if name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
                return data
        return None


@functools.lru_cache(maxsize=1)
def hostile_samples() -> tuple[HostileSample, ...]:
    """All hostile samples in tar order (the duplicate key appears first and last)."""
    ok, dec, big = Status.OK.value, Status.DECODE_ERROR.value, Status.IMAGE_TOO_LARGE.value
    jpeg = _jpeg(_drawing(64, 48))
    rotated_stored = _split_colours(300, 200)
    samples = [
        _sample(DUPLICATE_KEY, "jpg", jpeg, OK_CAPTION, ok, (64, 48), reader_dependent=True,
                note="first of two non-contiguous occurrences of the key: labelled as usual"),
        _sample("hostile_corrupt_jpeg", "jpg", b"\xff\xd8\xff\xe0" + _noise(2000), OK_CAPTION, dec),
        _sample("hostile_truncated_jpeg", "jpg", jpeg[: len(jpeg) // 2], OK_CAPTION, dec),
        _sample("hostile_html_as_jpg", "jpg", _HTML, OK_CAPTION, dec),
        _sample("hostile_zero_byte", "jpg", b"", OK_CAPTION, dec, reader_dependent=True,
                note="the image member exists but is empty: decode_error, not missing_image"),
        _sample("hostile_missing_image", None, b"", OK_CAPTION, Status.MISSING_IMAGE.value),
        HostileSample(
            key="hostile_missing_caption", members=(("hostile_missing_caption.jpg", jpeg),),
            status=Status.NO_CAPTION.value, size=(64, 48), image_status=ok, reader_dependent=True,
            note="image only, no .txt and no .json: nothing to ground, the image still decodes",
        ),
        _sample("hostile_cmyk_jpeg", "jpg", _jpeg(_drawing(120, 80).convert("CMYK")), OK_CAPTION, ok, (120, 80)),
        _sample("hostile_16bit_png", "png", _png(_gray16(90, 60)), OK_CAPTION, ok, (90, 60)),
        _sample("hostile_palette_transparent_png", "png", _palette_png(), OK_CAPTION, ok, (50, 40)),
        _sample("hostile_rgba_png", "png", _png(_alpha(_drawing(70, 50), "RGBA")), OK_CAPTION, ok, (70, 50)),
        _sample("hostile_la_png", "png", _png(_alpha(_drawing(70, 50), "LA")), OK_CAPTION, ok, (70, 50)),
        _sample("hostile_grayscale_jpeg", "jpg", _jpeg(_drawing(80, 60).convert("L")), OK_CAPTION, ok, (80, 60)),
        _sample("hostile_bilevel_png", "png", _png(_drawing(40, 30).convert("1")), OK_CAPTION, ok, (40, 30)),
        _sample("hostile_exif_rotated_jpeg", "jpg", _jpeg(rotated_stored, orientation=6), OK_CAPTION, ok,
                (200, 300), orientation=6, note="stored 300x200 with orientation 6: boxes in the 200x300 frame"),
        _sample("hostile_1x1_png", "png", _png(Image.new("RGB", (1, 1), (10, 200, 30))), OK_CAPTION, ok, (1, 1)),
        _sample("hostile_huge_jpeg", "jpg", _jpeg(Image.new("RGB", (4000, 3000), (90, 120, 200))), OK_CAPTION,
                ok, (4000, 3000)),
        _sample("hostile_animated_webp", "webp", _animated_webp(), OK_CAPTION, ok, (40, 30),
                note="animated: the first frame is used"),
        _sample("hostile_avif", "avif", AVIF_24X16, OK_CAPTION, AVIF_STATUS, (24, 16),
                note="an .avif member is the image: ok where Pillow decodes AVIF, else decode_error"),
        _sample("hostile_decompression_bomb", "png", bomb_png(*BOMB_SIZE), OK_CAPTION, big,
                note="a 150-byte PNG whose header declares 30000x30000; refused before decoding"),
        _sample("hostile_empty_caption", "jpg", jpeg, "", Status.NO_CAPTION.value, (64, 48)),
        _sample("hostile_whitespace_caption", "jpg", jpeg, " \t\n  \r\n", Status.NO_CAPTION.value, (64, 48)),
        _sample("hostile_latin1_caption", "jpg", jpeg, "café au lait in a white cup on a wooden table", ok,
                (64, 48), caption_bytes="café au lait in a white cup on a wooden table".encode("latin-1"),
                reader_dependent=True,
                note="not UTF-8: decode with errors='replace' ('caf\\ufffd au lait ...'); still ok"),
        _sample("hostile_caption_50k", "jpg", jpeg, _long_caption(50_000), ok, (64, 48),
                note="50,000 characters of real sentences: split into several prompts"),
        _sample("hostile_caption_400_words", "jpg", jpeg, _words_caption(400), ok, (64, 48),
                note="longer than the 256-token text encoder limit: split, spans still exact"),
        _sample("hostile_dotted", "jpg", jpeg, OK_CAPTION, ok, (64, 48), member_key="hostile_dotted.v2.final",
                reader_dependent=True,
                note="members 'hostile_dotted.v2.final.jpg|json|txt': webdataset's convention splits at the "
                     "FIRST dot of the file name, so the key is 'hostile_dotted' and the image suffix "
                     "'v2.final.jpg' (its last part 'jpg' makes it the image)"),
        _sample("../../hostile_evil", "jpg", jpeg, OK_CAPTION, ok, (64, 48), reader_dependent=True,
                note="'..' segments: the row keeps the key, the writer must not write outside the root"),
        _sample("/tmp/hostile_absolute", "jpg", jpeg, OK_CAPTION, ok, (64, 48), reader_dependent=True,
                note="absolute member path: the row keeps the key, the writer must not write there"),
        _sample("hostile/nested/dir", "jpg", jpeg, OK_CAPTION, ok, (64, 48), reader_dependent=True,
                note="slashes in the key (webdataset keeps the directory part in the key)"),
        _sample(f"{DUPLICATE_KEY}#dup1", "jpg", _jpeg(_drawing(32, 32)), OK_CAPTION, Status.DUPLICATE_KEY.value,
                (32, 32), member_key=DUPLICATE_KEY, reader_dependent=True,
                note="second occurrence of the key: its own row, keyed with a '#dup1' suffix so that "
                     "Parquet keys stay unique, status duplicate_key"),
    ]
    return tuple(samples)


def expected_statuses() -> dict[str, str]:
    """{key: status} as write_hostile_shard returns it, keys as the reader reports them."""
    return {sample.key: sample.status for sample in hostile_samples()}


def write_hostile_shard(path: str | os.PathLike[str]) -> dict[str, str]:
    """Write the hostile shard to `path` and return {key: expected status value}."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in hostile_samples():
            for name, data in sample.members:
                tar.addfile(tar_info(name, len(data)), io.BytesIO(data))
    return expected_statuses()


def truncate_tar(path: str | os.PathLike[str], out_path: str | os.PathLike[str], fraction: float) -> list[str]:
    """Copy the first `fraction` of `path`'s bytes to `out_path` (a download cut short).

    Returns the names of the members whose header and data lie wholly before the cut, in tar
    order: the reader can give rows for these, and must report the shard as truncated.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    with open(path, "rb") as f:
        data = f.read()
    cut = int(len(data) * fraction)
    with open(out_path, "wb") as f:
        f.write(data[:cut])
    with tarfile.open(path, "r") as tar:
        return [m.name for m in tar.getmembers() if m.offset_data + m.size <= cut]


def _sample(
    key: str,
    ext: str | None,
    image: bytes,
    caption: str,
    status: str,
    size: tuple[int, int] | None = None,
    *,
    orientation: int = 1,
    member_key: str | None = None,
    caption_bytes: bytes | None = None,
    reader_dependent: bool = False,
    note: str = "",
) -> HostileSample:
    """A sample with img2dataset's three members (image omitted when ext is None).

    `member_key` is the stem written in the member names when it differs from the key the
    reader should report (dotted names, the duplicate's second occurrence).
    """
    stem = member_key if member_key is not None else key
    members: dict[str, bytes] = {}
    if ext is not None:
        members[ext] = image
    meta = {"url": f"https://hostile.example.com/{stem}", "caption": caption, "key": stem, "status": "success",
            "error_message": None, "width": size[0] if size else None, "height": size[1] if size else None,
            "original_width": size[0] if size else None, "original_height": size[1] if size else None,
            "exif": "{}"}
    members["json"] = json.dumps(meta).encode("utf-8")
    members["txt"] = caption_bytes if caption_bytes is not None else caption.encode("utf-8")
    image_status = _image_status(status, ext)
    return HostileSample(
        key=key, members=tuple((f"{stem}.{e}", d) for e, d in sorted(members.items())), status=status,
        size=size if image_status == Status.OK.value else None, orientation=orientation,
        image_status=image_status, reader_dependent=reader_dependent, note=note,
    )


def _image_status(status: str, ext: str | None) -> str | None:
    """What decode_for_teacher alone reports: a decoding failure, or ok for any row whose image decodes."""
    if ext is None:
        return None
    if status in (Status.DECODE_ERROR.value, Status.IMAGE_TOO_LARGE.value):
        return status
    return Status.OK.value


_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
    b"<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n"
)


def _noise(n: int) -> bytes:
    return np.random.default_rng(3).integers(0, 256, n, dtype=np.uint8).tobytes()


def _drawing(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), (230, 220, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 8, height // 8, width // 2, height // 2), fill=(200, 30, 40))
    draw.ellipse((width // 2, height // 3, width - 2, height - 2), fill=(30, 70, 200))
    return image


def _split_colours(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: after orientation 6 (90 degrees clockwise) red is on top."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    ImageDraw.Draw(image).rectangle((0, 0, width // 2 - 1, height - 1), fill=(255, 0, 0))
    return image


def _gray16(width: int, height: int) -> Image.Image:
    """A 16-bit grayscale ramp using the whole 0..65535 range (Pillow alone would clip it white)."""
    ramp = np.linspace(0, 65535, width, dtype=np.float64).astype(np.uint16)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(ramp, (height, width))))


def _alpha(image: Image.Image, mode: str) -> Image.Image:
    """Left half fully transparent (over black pixels), right half opaque."""
    base = image.convert(mode[:-1] if mode == "LA" else "RGB")
    alpha = Image.new("L", image.size, 255)
    ImageDraw.Draw(alpha).rectangle((0, 0, image.width // 2 - 1, image.height - 1), fill=0)
    ImageDraw.Draw(base).rectangle((0, 0, image.width // 2 - 1, image.height - 1), fill=0)
    base.putalpha(alpha)
    return base


def _palette_png() -> bytes:
    image = _drawing(50, 40).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return _png(image, transparency=int(image.getpixel((0, 0))))


def _jpeg(image: Image.Image, orientation: int | None = None) -> bytes:
    out = io.BytesIO()
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    image.save(out, format="JPEG", quality=85, **kwargs)
    return out.getvalue()


def _png(image: Image.Image, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **kwargs)
    return out.getvalue()


def _animated_webp() -> bytes:
    frames = [Image.new("RGB", (40, 30), colour) for colour in [(250, 0, 0), (0, 0, 250), (0, 250, 0)]]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height 8-bit grayscale, with valid CRCs.

    The IDAT holds a few compressed rows only: decoding it would fail, but it must never get
    that far, because the header alone says the image is too large.
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


_SENTENCES = [
    "A brown dog runs across the green grass near a small lake.",
    "Two children fly a red kite on the windy beach.",
    "An old man reads a newspaper on a wooden bench in the park.",
    "A white cat sleeps on the sofa next to a striped pillow.",
    "The yellow bus stops in front of the tall brick building.",
]


def _long_caption(n_chars: int) -> str:
    """Exactly n_chars characters of real sentences (the last one may be cut)."""
    text = " ".join(_SENTENCES)
    repeats = n_chars // (len(text) + 1) + 1
    return ((text + " ") * repeats)[:n_chars]


def _words_caption(n_words: int) -> str:
    words = " ".join(_SENTENCES).split()
    return " ".join(words[i % len(words)] for i in range(n_words))
