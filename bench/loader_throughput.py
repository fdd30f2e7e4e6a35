"""Loader throughput in samples/s/core: `python bench/loader_throughput.py [--output DIR] ...`.

Without `--output` it writes a synthetic output (CC12M-like sizes, real JPEG/PNG bytes) with the
test fixture builder. Each configuration streams `--samples` samples through `GroundingLoader`
after a warm-up batch and reports samples/s and samples/s per busy core (the DataLoader workers, which
PyTorch limits to one thread each; with num_workers=0 the main process's torch threads). The label stage alone (tar read + JSON + filters + tokens,
no image decode) is timed too, since that is what a resume replays.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch  # noqa: E402

from pipeline.io.committed import complete_shards  # noqa: E402
from pipeline.training.loader import GroundingLoader, GroundingShards  # noqa: E402
from pipeline.training.targets import ImageConfig, LabelFilter, TextConfig  # noqa: E402

CC12M_SIZES = [(640, 480), (512, 683), (800, 533), (600, 600), (840, 560)]


def tokenizer_for(path: str | None, tmp: Path):
    if path:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    from tests.pipeline.output_fixture import tokenizer

    return tokenizer(tmp)


def measure(output: str, tok, workers: int, samples: int, batch: int, image: ImageConfig) -> dict:
    ds = GroundingShards(output, tok, image=image, text=TextConfig(max_text_len=256), label_filter=LabelFilter(min_boxes=1),
                         shuffle_buffer=256, epochs=None, resampled=True)
    loader = iter(GroundingLoader(ds, batch_size=batch, num_workers=workers))
    next(loader)
    start = time.perf_counter()
    seen = sum(len(b["targets"]) for b in itertools.islice(loader, max(1, samples // batch)))
    elapsed = time.perf_counter() - start
    cores = workers if workers > 0 else torch.get_num_threads()  # workers run 1 torch thread each
    return {"num_workers": workers, "samples": seen, "seconds": round(elapsed, 2),
            "samples_per_s": round(seen / elapsed, 1), "samples_per_s_per_core": round(seen / elapsed / cores, 1)}


def measure_labels(output: str, tok) -> dict:
    ds = GroundingShards(output, tok, text=TextConfig(max_text_len=256))
    start = time.perf_counter()
    seen = sum(1 for _ in ds._labelled(complete_shards(output)))
    elapsed = time.perf_counter() - start
    return {"stage": "labels only (no image decode)", "samples": seen, "samples_per_s_per_core": round(seen / elapsed, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="an output root; default: build a synthetic one")
    parser.add_argument("--tokenizer", help="a tokenizer directory (e.g. the tiny teacher's); default: test vocab")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    output = args.output
    if output is None:
        from tests.pipeline.output_fixture import build_output

        output = str(tmp / "out")
        build_output(Path(output), shards=4, samples=100, uncommitted=0, sizes=CC12M_SIZES)
    tok = tokenizer_for(args.tokenizer, tmp)
    image = ImageConfig(min_size=args.min_size, max_size=args.max_size)
    results = [measure_labels(output, tok)]
    for workers in (int(w) for w in args.workers.split(",")):
        results.append(measure(output, tok, workers, args.samples, args.batch, image))
    uint8 = dataclasses.replace(image, normalize=False)
    results.append({"images": "uint8 (normalise on device)", **measure(output, tok, 1, args.samples, args.batch, uint8)})
    print(json.dumps({"cpu_count": os.cpu_count(), "image": [args.min_size, args.max_size], "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
