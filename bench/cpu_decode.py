"""CPU cost of decoding + resizing images for the teacher, per core: the reference-exact default
against `--fast-decode`, side by side, with the pixel deviation fast decoding costs.

    python bench/cpu_decode.py [--cc12m PATH] [--flickr PATH] [--seconds 2] [--min-size 800] [--max-size 1333]

Runs `pipeline.stages.images.decode_for_teacher` in this one process (one core: Pillow decodes and
resizes on the calling thread) over real photos: the CC12M shard, the Flickr30k photos as they
are, and the same Flickr30k photos enlarged to 2000x1500, 3000x2250 and 4000x3000 (re-encoded JPEG, quality
90), and prints samples/s with the reference path and the fast one, their ratio, and how far the
fast path's pixels are from the reference's (largest and mean absolute difference in grey levels,
PSNR). It answers "how many CPU cores feed one GPU": divide the teacher's images/s by the
samples/s here.

Fast decoding only changes anything when the JPEG is at least twice the teacher's size on both
axes (draft scales by 1/2, 1/4 or 1/8, never below the requested size) or shrinks by 3x or more
(the two-step resize).
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, features

REPO = Path(__file__).resolve().parents[1]

from pipeline.stages.images import decode_for_teacher, is_image_member  # noqa: E402

DEFAULT_CC12M = REPO.parent / "shared" / "data" / "cc12m" / "cc12m-train-0000.tar"
DEFAULT_FLICKR = REPO.parent / "shared" / "data" / "flickr30k_19img" / "flickr30k_entities_19img-000000.tar"


def shard_images(path: Path) -> list[bytes]:
    """The image members of a real img2dataset shard."""
    with tarfile.open(path) as tar:
        return [tar.extractfile(m).read() for m in tar.getmembers() if m.isfile() and is_image_member(m.name)]


def enlarged(images: list[bytes], width: int, height: int) -> list[bytes]:
    """Real photos enlarged to width x height (landscape) or height x width, as JPEG quality 90."""
    out = []
    for data in images:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        size = (width, height) if image.width >= image.height else (height, width)
        buffer = io.BytesIO()
        image.resize(size, Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def deviation(images: list[bytes], min_size: int, max_size: int) -> tuple[int, float, float]:
    """Largest and mean absolute difference (grey levels) and PSNR (dB) of fast against reference pixels."""
    worst, total, count, squared = 0, 0.0, 0, 0.0
    for data in images:
        ref = decode_for_teacher(data, min_size=min_size, max_size=max_size).pixels.astype(np.int32)
        fast = decode_for_teacher(data, min_size=min_size, max_size=max_size, fast=True).pixels.astype(np.int32)
        diff = np.abs(ref - fast)
        worst, total, count = max(worst, int(diff.max())), total + float(diff.sum()), count + diff.size
        squared += float((diff.astype(np.float64) ** 2).sum())
    mse = squared / count
    return worst, total / count, (float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))


def samples_per_second(images: list[bytes], *, fast: bool, seconds: float, min_size: int, max_size: int) -> float:
    """Decode the list round-robin for at least `seconds` of CPU time (after one warm-up pass).

    Timed with this process's CPU time, not wall time: it measures one core's throughput even
    when other processes share the machine.
    """
    for data in images:
        decode_for_teacher(data, min_size=min_size, max_size=max_size, fast=fast)
    done, started = 0, time.process_time()
    while True:
        for data in images:
            decode_for_teacher(data, min_size=min_size, max_size=max_size, fast=fast)
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
    parser.add_argument("--flickr", type=Path, default=DEFAULT_FLICKR)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per cell")
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    args = parser.parse_args(argv)

    datasets: list[tuple[str, list[bytes]]] = []
    if args.cc12m.exists():
        datasets.append((f"CC12M real ({args.cc12m.name})", shard_images(args.cc12m)))
    else:
        print(f"note: {args.cc12m} not found; skipping the real CC12M shard", file=sys.stderr)
    if args.flickr.exists():
        flickr = shard_images(args.flickr)
        datasets.append(("Flickr30k real", flickr))
        datasets.append(("Flickr30k enlarged to 2000x1500", enlarged(flickr[:6], 2000, 1500)))
        datasets.append(("Flickr30k enlarged to 3000x2250", enlarged(flickr[:4], 3000, 2250)))
        datasets.append(("Flickr30k enlarged to 4000x3000", enlarged(flickr[:3], 4000, 3000)))
    else:
        print(f"note: {args.flickr} not found; skipping the Flickr30k photos", file=sys.stderr)

    print(
        f"# Pillow {PIL.__version__} (libjpeg-turbo {features.version('libjpeg_turbo')}), "
        f"Python {platform.python_version()}, {platform.processor() or platform.machine()}; "
        f"samples per CPU-second of one process; teacher size: short side {args.min_size}, long side <= {args.max_size}"
    )
    print("| input | n | mean size | reference /s | fast /s | fast / reference | max diff | mean diff | PSNR dB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, images in datasets:
        sizes = {"min_size": args.min_size, "max_size": args.max_size}
        rates = [samples_per_second(images, fast=f, seconds=args.seconds, **sizes) for f in (False, True)]
        worst, mean, psnr = deviation(images, **sizes)
        print(f"| {name} | {len(images)} | {_mean_size(images)} | {rates[0]:.1f} | {rates[1]:.1f} | "
              f"{rates[1] / rates[0]:.2f}x | {worst} | {mean:.3f} | {psnr:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
