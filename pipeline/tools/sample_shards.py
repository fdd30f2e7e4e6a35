"""Write img2dataset-layout sample shards with real image bytes, for the demo and the tests.

`glip-samples DIR --shards N --samples M [--seed S] [--start K] [--with-stats]`

Each shard `DIR/SSSSS.tar` holds, per sample, `KEY.jpg|png|webp` (real encoded bytes of a
drawn picture: a gradient with random shapes, varied sizes and aspect ratios), `KEY.json`
(img2dataset's fields) and `KEY.txt` (a plausible web caption). Members are written the way
webdataset's `TarWriter` writes them (a key's members contiguous, sorted by extension), with
fixed metadata and mtime so that the same arguments always give byte-identical tars.

Keys follow img2dataset: shard index * 10000 + sample index, zero-padded to 9 digits.
`--with-stats` also writes img2dataset's `SSSSS.parquet` and `SSSSS_stats.json` beside each
tar, so that tests can show the job ignores them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

SAMPLES_PER_SHARD_LIMIT = 10_000
FIXED_MTIME = 1_700_000_000  # 2023-11-14: any constant makes the tars reproducible

COLOURS = {
    "red": (200, 30, 40), "blue": (30, 70, 200), "green": (40, 150, 60), "yellow": (235, 205, 40),
    "white": (245, 245, 245), "black": (20, 20, 20), "orange": (240, 130, 30), "brown": (120, 75, 40),
    "grey": (130, 130, 130), "pink": (240, 150, 180), "purple": (120, 50, 150),
}
OBJECTS = [
    "car", "house", "dog", "cat", "bicycle", "boat", "chair", "table", "umbrella", "tree",
    "horse", "bird", "cup of coffee", "vase of flowers", "backpack", "bus", "kite", "lamp",
]
VEHICLES = ["car", "bus", "truck", "van", "motorcycle", "bicycle"]
PLACES = [
    "on the beach", "on a city street", "in a park", "in the kitchen", "on a snowy mountain",
    "on a wooden dock", "in the garden",
]
RELATIONS = ["next to", "in front of", "behind", "under", "near", "beside"]
STOCK_PHRASES = [
    "Close-up of {a} {c} {o} {p}, stock photo, high resolution, royalty free image",
    "{A} {c} {o} and {a2} {c2} {o2} {p} during sunset. Lifestyle photography, travel, summer, holiday",
    "Modern interior with {a} {c} {o}, home decor ideas, minimalist design, {c2} accents, living room inspiration",
    "<PERSON> with {a} {c} {o} {p}",
    "Portrait of <PERSON> holding {a} {c} {o}, smiling, outdoors, happy, casual, copy space",
    "{C} {o} vector illustration isolated on white background. Flat design icon for web and mobile app",
]
TEMPLATES = [
    "{a} {c} {o} {r} {a2} {c2} {o2}",
    "{a} {c} {v} parked {r} {a2} {c2} {o2}",
    "{ao} {o} {p}",
    "photo of {a} {c} {o} {r} {ao2} {o2} {p}",
    "{A} {c} {o} {r} {a2} {c2} {o2} {p}",
]


@dataclass(frozen=True)
class GeneratedSample:
    """One sample as written: the members and the facts a test may check."""

    key: str
    ext: str
    image: bytes
    caption: str
    width: int
    height: int


def sample_key(shard: int, index: int) -> str:
    """img2dataset's key: shard * 10000 + index, 9 digits (000010003 is shard 1, sample 3)."""
    return f"{shard * SAMPLES_PER_SHARD_LIMIT + index:09d}"


def write_sample_shards(
    directory: str | os.PathLike[str],
    shards: int,
    samples: int,
    seed: int = 0,
    start: int = 0,
    *,
    with_stats: bool = False,
    max_side: int = 1600,
) -> list[str]:
    """Write shards `start .. start+shards-1` into `directory`; return the tar paths in order.

    Each shard's content depends only on (seed, shard index, samples, max_side), so
    `--start` writes the same shard 3 as a run from 0 would.
    """
    if shards < 0 or not 0 <= samples <= SAMPLES_PER_SHARD_LIMIT:
        raise ValueError(f"need shards >= 0 and 0 <= samples <= {SAMPLES_PER_SHARD_LIMIT}")
    if start < 0 or max_side < 64:
        raise ValueError("need start >= 0 and max_side >= 64")
    os.makedirs(directory, exist_ok=True)
    paths = []
    for shard in range(start, start + shards):
        generated = generate_shard(shard, samples, seed=seed, max_side=max_side)
        path = os.path.join(os.fspath(directory), f"{shard:05d}.tar")
        write_tar(path, [(f"{s.key}.{ext}", data) for s in generated for ext, data in _members(s)])
        if with_stats:
            _write_stats(os.fspath(directory), shard, generated)
        paths.append(path)
    return paths


def generate_shard(shard: int, samples: int, *, seed: int = 0, max_side: int = 1600) -> list[GeneratedSample]:
    """The samples of one shard, deterministic in (seed, shard)."""
    rng = random.Random(f"glip-samples:{seed}:{shard}")
    return [_generate_sample(rng, sample_key(shard, i), max_side) for i in range(samples)]


def write_tar(path: str, members: Sequence[tuple[str, bytes]]) -> None:
    """Write members in the given order with fixed metadata, so equal input gives equal bytes."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            tar.addfile(tar_info(name, len(data)), io.BytesIO(data))


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    """A regular-file header with the fixed owner, mode and mtime every writer here uses."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def img2dataset_json(sample: GeneratedSample, original_size: tuple[int, int] | None = None) -> dict:
    """The img2dataset metadata record for a sample (resize_mode 'no' unless original_size)."""
    original_w, original_h = original_size or (sample.width, sample.height)
    return {
        "url": f"https://images.example.com/{sample.key[:5]}/{sample.key}.{sample.ext}",
        "caption": sample.caption,
        "key": sample.key,
        "status": "success",
        "error_message": None,
        "width": sample.width,
        "height": sample.height,
        "original_width": original_w,
        "original_height": original_h,
        "exif": "{}",
    }


def _members(sample: GeneratedSample) -> list[tuple[str, bytes]]:
    """A key's members sorted by extension, as webdataset's TarWriter (and img2dataset) write them."""
    meta = json.dumps(img2dataset_json(sample, _original_size(sample)), indent=4).encode("utf-8")
    members = {sample.ext: sample.image, "json": meta, "txt": sample.caption.encode("utf-8")}
    return sorted(members.items())


def _original_size(sample: GeneratedSample) -> tuple[int, int] | None:
    """About one sample in five pretends img2dataset downscaled it by 2, as real shards show."""
    if int(sample.key) % 5 == 4:
        return sample.width * 2, sample.height * 2
    return None


def _generate_sample(rng: random.Random, key: str, max_side: int) -> GeneratedSample:
    ext = rng.choices(["jpg", "png", "webp"], weights=[7, 2, 2])[0]
    width, height = _draw_size(rng, max_side)
    grayscale = ext == "jpg" and rng.random() < 0.05
    caption, colours = _caption(rng)
    image = draw_picture(rng, width, height, colours)
    if grayscale:
        image = image.convert("L")
    return GeneratedSample(key=key, ext=ext, image=_encode(image, ext), caption=caption, width=width, height=height)


def _draw_size(rng: random.Random, max_side: int) -> tuple[int, int]:
    """Mostly web-typical sizes, some small, a few large; aspect ratios from 1:3 to 3:1.

    The bands are for max_side 1600 and shrink with it, so small test shards vary as much.
    """
    low, high = rng.choice([(64, 300), (300, 900), (300, 900), (900, 1600)])
    long_side = max(64, min(max_side, int(rng.uniform(low, high) * max_side / 1600)))
    aspect = rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9, 2.0, 3.0, rng.uniform(1.0, 3.0)])
    short_side = max(16, round(long_side / aspect))
    return (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)


def draw_picture(
    rng: random.Random, width: int, height: int, colours: Sequence[tuple[int, int, int]] = ()
) -> Image.Image:
    """A two-colour gradient with a few filled shapes: first in `colours`, then random ones."""
    start = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    end = np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32)
    horizontal = rng.random() < 0.5
    steps = np.linspace(0.0, 1.0, width if horizontal else height, dtype=np.float32)[:, None]
    ramp = (start + (end - start) * steps).astype(np.uint8)
    pixels = np.broadcast_to(ramp[None, :, :], (height, width, 3)) if horizontal else np.broadcast_to(
        ramp[:, None, :], (height, width, 3)
    )
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    draw = ImageDraw.Draw(image)
    for i in range(max(len(colours), rng.randint(1, 5))):
        colour = colours[i] if i < len(colours) else tuple(rng.randrange(256) for _ in range(3))
        x0, x1 = sorted(rng.randrange(width) for _ in range(2))
        y0, y1 = sorted(rng.randrange(height) for _ in range(2))
        shape = rng.choice(["ellipse", "rectangle", "polygon"])
        if shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == "rectangle":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(rng.randrange(width), rng.randrange(height)) for _ in range(3)], fill=colour)
    return image


def _encode(image: Image.Image, ext: str) -> bytes:
    out = io.BytesIO()
    if ext == "jpg":
        image.save(out, format="JPEG", quality=90)
    elif ext == "png":
        image.save(out, format="PNG", compress_level=1)
    else:
        image.save(out, format="WEBP", quality=80, method=0)
    return out.getvalue()


def _caption(rng: random.Random) -> tuple[str, list[tuple[int, int, int]]]:
    """A caption and the RGB colours it names, so the picture shows shapes of those colours."""
    c, c2 = rng.sample(sorted(COLOURS), 2)
    o, o2 = rng.sample(OBJECTS, 2)
    words = {
        "c": c, "c2": c2, "o": o, "o2": o2,
        "v": rng.choice(VEHICLES), "p": rng.choice(PLACES), "r": rng.choice(RELATIONS),
        "a": _article(c), "a2": _article(c2), "ao": _article(o), "ao2": _article(o2), "C": c.capitalize(),
    }
    words["A"] = words["a"].capitalize()
    template = rng.choice(STOCK_PHRASES) if rng.random() < 0.3 else rng.choice(TEMPLATES)
    uses = ((c, "{c}" in template or "{C}" in template), (c2, "{c2}" in template))
    return template.format(**words), [COLOURS[name] for name, used in uses if used]


def _article(word: str) -> str:
    """The indefinite article for the word that follows it."""
    return "an" if word[0] in "aeiou" else "a"


_STATS_SCHEMA = pa.schema(
    [(name, pa.string()) for name in ("url", "caption", "key", "status", "error_message")]
    + [(name, pa.int64()) for name in ("width", "height", "original_width", "original_height")]
    + [("exif", pa.string())]
)


def _write_stats(directory: str, shard: int, generated: list[GeneratedSample]) -> None:
    """img2dataset's per-shard side files (a Parquet of the metadata and a stats JSON)."""
    records = [img2dataset_json(s, _original_size(s)) for s in generated]
    table = pa.table({name: [r[name] for r in records] for name in _STATS_SCHEMA.names}, schema=_STATS_SCHEMA)
    pq.write_table(table, os.path.join(directory, f"{shard:05d}.parquet"))
    stats = {
        "count": len(generated),
        "successes": len(generated),
        "failed_to_download": 0,
        "failed_to_resize": 0,
        "duration": 1.0,
        "start_time": float(FIXED_MTIME),
        "end_time": float(FIXED_MTIME + 1),
        "status_dict": {"success": len(generated)},
    }
    with open(os.path.join(directory, f"{shard:05d}_stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=4)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glip-samples", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="where the shards 00000.tar, 00001.tar, ... are written")
    parser.add_argument("--shards", type=int, required=True, help="number of shards")
    parser.add_argument("--samples", type=int, required=True, help="samples per shard")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same bytes (default 0)")
    parser.add_argument("--start", type=int, default=0, help="index of the first shard")
    parser.add_argument("--max-side", type=int, default=1600, help="largest image side in pixels")
    parser.add_argument("--with-stats", action="store_true", help="also write img2dataset's .parquet and _stats.json")
    args = parser.parse_args(argv)
    try:
        paths = write_sample_shards(
            args.directory, args.shards, args.samples, seed=args.seed, start=args.start,
            with_stats=args.with_stats, max_side=args.max_side,
        )
    except ValueError as exc:
        parser.error(str(exc))
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
