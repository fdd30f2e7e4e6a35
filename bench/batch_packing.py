"""How much of each teacher batch is padding, and what that costs the teacher.

Part `sizes` (no model): the share of padded pixels that are real, for batches formed by the
previous scheme (sort each 64-image window by (height, width), cut into batches) and by
`ShapeBatcher` (32-image windows, carry 48), on real size distributions: Flickr30k Entities val
(1,000 photos), the CC12M shard's 32 images (resampled to 2,000) and our generated samples.

Part `teacher`: the tiny teacher on this CPU labels the same generated images batched both ways,
alternating, and the images/s are compared (the backbone and encoder cost follows padded area).

    python bench/batch_packing.py                      # both parts
    python bench/batch_packing.py --part sizes
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

from pipeline.stages.batching import ShapeBatcher, padding_efficiency  # noqa: E402
from teacher.resize import teacher_size  # noqa: E402

BATCH, OLD_WINDOW, NEW_WINDOW, CARRY = 16, 64, 32, 48


def window_sorted(items: list, shape_of, window: int = OLD_WINDOW, batch: int = BATCH) -> list[list]:
    """The previous scheme."""
    out = []
    for s in range(0, len(items), window):
        part = sorted(items[s : s + window], key=shape_of)
        out += [part[i : i + batch] for i in range(0, len(part), batch)]
    return out


def shape_batched(items: list, shape_of, window: int = NEW_WINDOW, batch: int = BATCH, carry: int = CARRY) -> list[list]:
    batcher: ShapeBatcher = ShapeBatcher(batch, carry)
    out = []
    for s in range(0, len(items), window):
        out += batcher.add((shape_of(it), it) for it in items[s : s + window])
    return out + batcher.flush()


def size_distributions() -> dict[str, list[tuple[int, int]]]:
    """(width, height) originals per source."""
    from PIL import Image

    from pipeline.tools.sample_shards import _draw_size

    rng = random.Random(0)
    out: dict[str, list[tuple[int, int]]] = {}
    flickr = SHARED / "flickr30k_entities" / "val.jsonl"
    if flickr.is_file():
        by_image = {}
        for line in flickr.open():
            row = json.loads(line)
            by_image[row["image_id"]] = (row["width"], row["height"])
        out["Flickr30k Entities val (1,000 photos)"] = list(by_image.values())
    cc12m = SHARED / "cc12m" / "cc12m-train-0000.tar"
    if cc12m.is_file():
        with tarfile.open(cc12m) as tf:
            real = [Image.open(io.BytesIO(tf.extractfile(m).read())).size for m in tf if m.name.endswith(".jpg")]
        out[f"CC12M shard ({len(real)} photos, resampled to 2,000)"] = [rng.choice(real) for _ in range(2000)]
    out["generated samples (pipeline.tools.sample_shards, 2,000)"] = [_draw_size(rng, 1600) for _ in range(2000)]
    if len(out) == 1:
        print(f"(real size data not found under {SHARED}: only generated sizes)")
    return out


def part_sizes() -> None:
    print("\n| sizes | images | real / padded pixels, window sort (old) | ShapeBatcher (new) | padded pixels old / new |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, sizes in size_distributions().items():
        shapes = [teacher_size(w, h)[::-1] for w, h in sizes]
        random.Random(1).shuffle(shapes)
        old = padding_efficiency(window_sorted(shapes, lambda s: s))
        new = padding_efficiency(shape_batched(shapes, lambda s: s))
        print(f"| {name} | {len(shapes)} | {old:.3f} | {new:.3f} | {new / old:.2f}x |")


def part_teacher(samples: int, runs: int, min_size: int, max_size: int) -> None:
    import torch

    from pipeline.config import build_config
    from pipeline.stages.prepare import ShardPreparer, TeacherBatch
    from pipeline.tools.sample_shards import write_sample_shards
    from teacher.grounding_dino.tiny import write_tiny_teacher
    from teacher.load import load_teacher

    work = Path(tempfile.mkdtemp(prefix="batch-packing-"))
    shard = write_sample_shards(work / "in", shards=1, samples=samples, seed=5)[0]
    ckpt = write_tiny_teacher(work / "teacher")
    cfg = build_config({"input": shard, "output": str(work / "out"), "teacher": str(ckpt), "device": "cpu",
                        "batch_size": BATCH, "min_size": min_size, "max_size": max_size})
    teacher = load_teacher(str(ckpt), cfg.grounding_settings(), device="cpu")
    by_row = []
    for item in ShardPreparer(cfg).prepare(shard):
        if isinstance(item, TeacherBatch):
            by_row += zip(item.rows, item.requests)
    requests = [r for _, r in sorted(by_row, key=lambda p: p[0])]  # input order
    shape_of = lambda r: (r.pixels.shape[0], r.pixels.shape[1])  # noqa: E731
    schemes = {"window sort (old)": window_sorted(requests, shape_of), "ShapeBatcher (new)": shape_batched(requests, shape_of)}
    teacher.predict(requests[:BATCH])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in schemes}
    for _ in range(runs):
        for name, batches in schemes.items():
            t = time.perf_counter()
            for b in batches:
                teacher.predict(b)
            seconds[name].append(time.perf_counter() - t)
    print(f"\ntiny teacher on this CPU ({torch.get_num_threads()} threads), {len(requests)} generated images at "
          f"{min_size}/{max_size}, batch {BATCH}, median of {runs} alternating runs")
    print("| batching | real / padded pixels | seconds | images/s |\n| --- | ---: | ---: | ---: |")
    rates = {}
    for name, batches in schemes.items():
        sec = statistics.median(seconds[name])
        rates[name] = len(requests) / sec
        print(f"| {name} | {padding_efficiency([[shape_of(r) for r in b] for b in batches]):.3f} | {sec:.1f} | {rates[name]:.2f} |")
    print(f"new / old images/s: {rates['ShapeBatcher (new)'] / rates['window sort (old)']:.2f}x")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["sizes", "teacher", "all"], default="all")
    p.add_argument("--samples", type=int, default=192)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--min-size", type=int, default=400)
    p.add_argument("--max-size", type=int, default=667)
    args = p.parse_args()
    if args.part in ("sizes", "all"):
        part_sizes()
    if args.part in ("teacher", "all"):
        part_teacher(args.samples, args.runs, args.min_size, args.max_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
