"""CPU cost of decoding + resizing images for the teacher, per core, with and without JPEG draft.

    python bench/cpu_decode.py [--cc12m PATH] [--seconds 2] [--min-size 800] [--max-size 1333]

Runs `pipeline.stages.images.decode_for_teacher` in this one process (one core: Pillow decodes and
resizes on the calling thread) over the real CC12M shard and over generated large JPEGs, and
prints samples/s with draft off and on, and their ratio. It answers "how many CPU cores feed one
GPU": divide the teacher's images/s by the samples/s here.

Draft only helps when the JPEG is at least twice the teacher's size on both axes (Pillow scales
by 1/2, 1/4 or 1/8, never below the requested size): a 2000x1500 JPEG going to 1067x800 gains
nothing, a 4000x3000 one decodes at 2000x1500.
"""

from __future__ import annotations

import argparse
import io
import platform
import random
import sys
import tarfile
import time
from pathlib import Path

import PIL
from PIL import Image, features

REPO = Path(__file__).resolve().parents[1]

from pipeline.stages.images import decode_for_teacher, is_image_member  # noqa: E402
from pipeline.tools.sample_shards import draw_picture  # noqa: E402

DEFAULT_CC12M = REPO.parent / "shared" / "data" / "cc12m" / "cc12m-train-0000.tar"


def cc12m_images(path: Path) -> list[bytes]:
    """The image members of a real img2dataset shard."""
    with tarfile.open(path) as tar:
        return [tar.extractfile(m).read() for m in tar.getmembers() if m.isfile() and is_image_member(m.name)]


def generated_jpegs(width: int, height: int, count: int) -> list[bytes]:
    """Photo-sized JPEGs of drawn gradients and shapes (quality 90, 4:2:0 like most web JPEGs)."""
    images = []
    for i in range(count):
        out = io.BytesIO()
        draw_picture(random.Random(i), width, height).save(out, format="JPEG", quality=90)
        images.append(out.getvalue())
    return images


def samples_per_second(images: list[bytes], *, use_draft: bool, seconds: float, min_size: int, max_size: int) -> float:
    """Decode the list round-robin for at least `seconds` of CPU time (after one warm-up pass).

    Timed with this process's CPU time, not wall time: it measures one core's throughput even
    when other processes share the machine.
    """
    for data in images:
        decode_for_teacher(data, min_size=min_size, max_size=max_size, use_draft=use_draft)
    done, started = 0, time.process_time()
    while True:
        for data in images:
            decode_for_teacher(data, min_size=min_size, max_size=max_size, use_draft=use_draft)
        done += len(images)
        elapsed = time.process_time() - started
        if elapsed >= seconds:
            return done / elapsed


def _mean_size(images: list[bytes]) -> str:
    sizes = [Image.open(io.BytesIO(data)).size for data in images]
    return f"{sum(w for w, _ in sizes) / len(sizes):.0f}x{sum(h for _, h in sizes) / len(sizes):.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cc12m", type=Path, default=DEFAULT_CC12M)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per cell")
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    args = parser.parse_args(argv)

    datasets: list[tuple[str, list[bytes]]] = []
    if args.cc12m.exists():
        datasets.append((f"cc12m real ({args.cc12m.name})", cc12m_images(args.cc12m)))
    else:
        print(f"note: {args.cc12m} not found; skipping the real shard", file=sys.stderr)
    datasets.append(("generated JPEG 2000x1500", generated_jpegs(2000, 1500, 6)))
    datasets.append(("generated JPEG 4000x3000", generated_jpegs(4000, 3000, 3)))

    print(
        f"# Pillow {PIL.__version__} (libjpeg-turbo {features.version('libjpeg_turbo')}), "
        f"Python {platform.python_version()}, {platform.processor() or platform.machine()}; "
        f"samples per CPU-second of one process; teacher size: short side {args.min_size}, long side <= {args.max_size}"
    )
    header = (
        f"| {'input':<34} | {'n':>3} | {'mean size':>10} | {'no draft /s':>11} | {'draft /s':>9} | {'draft/no':>8} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for name, images in datasets:
        sizes = {"min_size": args.min_size, "max_size": args.max_size}
        rates = [samples_per_second(images, use_draft=d, seconds=args.seconds, **sizes) for d in (False, True)]
        print(
            f"| {name:<34} | {len(images):>3} | {_mean_size(images):>10} | {rates[0]:>11.1f} | {rates[1]:>9.1f} "
            f"| {rates[1] / rates[0]:>7.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
