"""pipeline.stages.reader takes as a sample's image exactly the members the decoder's list names."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import features

from pipeline.stages import images, reader
from pipeline.stages.images import ImageRejected, decode_for_teacher
from pipeline.stages.prepare import MISSING_IMAGE_ERROR
from pipeline.stages.reader import iter_samples
from pipeline.tools.sample_shards import tar_info
from schemas.rows import IMAGE_EXTENSIONS, Status
from tests.hostile_corpus import AVIF_24X16

CAPTION = b"a red car parked next to a white house"


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> str:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            tar.addfile(tar_info(name, len(data)), io.BytesIO(data))
    return str(path)


def test_reader_uses_the_decoders_extension_list() -> None:
    assert reader.IMAGE_EXTENSIONS is images.IMAGE_EXTENSIONS
    assert not hasattr(reader, "IMAGE_EXTS")


def test_every_listed_extension_and_no_other_makes_the_image(tmp_path: Path) -> None:
    exts = sorted(IMAGE_EXTENSIONS) + ["AVIF", "v2.avif", "heic", "svg"]
    members = [m for i, ext in enumerate(exts) for m in ((f"k{i}.{ext}", b"pixels"), (f"k{i}.txt", CAPTION))]
    samples = list(iter_samples(_write_tar(tmp_path / "exts.tar", members)))
    got = {s.image_ext: s.image for s in samples}
    assert [s.key for s in samples] == [f"k{i}" for i in range(len(exts))]
    assert set(got) == {e.lower() for e in exts[:-2]} | {None}
    assert all(data == b"pixels" for ext, data in got.items() if ext is not None)
    assert all(f".{ext}" in MISSING_IMAGE_ERROR for ext in IMAGE_EXTENSIONS)


def test_avif_member_is_the_image_and_decodes_as_this_pillow_allows(tmp_path: Path) -> None:
    url = _write_tar(tmp_path / "avif.tar", [("cat.avif", AVIF_24X16), ("cat.txt", CAPTION)])
    [sample] = list(iter_samples(url))
    assert (sample.key, sample.image_ext, sample.image, sample.caption()) == ("cat", "avif", AVIF_24X16, CAPTION.decode())
    if features.check("avif"):
        decoded = decode_for_teacher(sample.image, min_size=16, max_size=24)
        assert (decoded.width, decoded.height, decoded.pixels.shape) == (24, 16, (16, 24, 3))
        assert np.abs(decoded.pixels.astype(int) - (200, 30, 40)).max() <= 8
    else:
        with pytest.raises(ImageRejected) as info:
            decode_for_teacher(sample.image)
        assert info.value.status is Status.DECODE_ERROR
        assert "AVIF" in info.value.message and "cannot decode" in info.value.message


def test_corrupt_avif_is_a_decode_error(tmp_path: Path) -> None:
    corrupt = AVIF_24X16[:40] + bytes(200)
    url = _write_tar(tmp_path / "bad.tar", [("bad.avif", corrupt), ("bad.txt", CAPTION)])
    [sample] = list(iter_samples(url))
    assert sample.image == corrupt
    with pytest.raises(ImageRejected) as info:
        decode_for_teacher(sample.image)
    assert info.value.status is Status.DECODE_ERROR
    assert info.value.message and "\n" not in info.value.message
