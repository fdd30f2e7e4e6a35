"""CLIP re-scoring throughput: crops/s of `ClipRescorer.score` with random-weight CLIPs.

    python bench/rescore_speed.py                                   # CPU: tiny and ViT-B/32, batch 1 16 64
    python bench/rescore_speed.py --threads 1                       # a CPU shared with other work
    python bench/rescore_speed.py --device cuda --batch 64 256 --crops 2048

Two checkpoints are written to a temporary directory first (no download): the tiny CLIP of the
tests (32x32 input) and a ViT-B/32-sized one (`CLIPConfig()` defaults, 224x224, random weights,
the tiny tokenizer). The inputs are what the re-scoring stage gets: teacher-sized uint8 images
(800x1216) with their caption and 7 boxes of 4 phrases each, so 8 crops per image with the whole
image. For each batch size the table gives crops/s of

    score      the whole call: cropping, the checkpoint's image processor, text and image
               forwards (bf16 autocast on CUDA), cosines;
    process    the image processor alone (host work, the same on every device);
    forward    the image tower alone on ready pixel values.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from teacher.clip.rescore import ClipRescorer, box_pixels
from teacher.clip.tiny import build_bpe, with_token_ids, write_random_clip, write_tiny_clip
from teacher.protocol import Detection, TeacherRequest
from teacher.tiny_checkpoints import COMMON_WORDS

PHRASES = ["a dog", "a red car", "the old house", "two people"]
BOXES_PER_IMAGE = 7


def write_checkpoints(root: Path, sizes: list[str]) -> dict[str, str]:
    """The checkpoints to time, by name."""
    from transformers import CLIPConfig

    found = {}
    if "tiny" in sizes:
        found["tiny"] = str(write_tiny_clip(root / "tiny"))
    if "vit-b32" in sizes:
        vocab, merges = build_bpe(COMMON_WORDS)
        config = CLIPConfig(text_config=with_token_ids({}, vocab))
        found["vit-b32"] = str(write_random_clip(root / "vit-b32", config, image_size=224, vocab=vocab, merges=merges))
    return found


def make_inputs(n_images: int, seed: int = 0) -> tuple[list[TeacherRequest], list[list[Detection]]]:
    """Teacher-sized noise images, a caption naming the phrases, boxes of 5-60% of each side."""
    rng = np.random.default_rng(seed)
    caption = " and ".join(PHRASES) + " in the park"
    spans, start = [], 0
    for phrase in PHRASES:
        spans.append((start, start + len(phrase)))
        start += len(phrase) + len(" and ")
    requests, detections = [], []
    for i in range(n_images):
        h, w = 800, 1216
        requests.append(TeacherRequest(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), w, h, f"{caption} {i}", spans))
        dets = []
        for b in range(BOXES_PER_IMAGE):
            bw, bh = w * rng.uniform(0.05, 0.6), h * rng.uniform(0.05, 0.6)
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            dets.append(Detection(b % len(PHRASES), x0, y0, x0 + bw, y0 + bh, 0.5))
        detections.append(dets)
    return requests, detections


def timed(fn, device: str, repeat: int) -> float:
    """Seconds `fn` takes, the device's queued work included: the best of `repeat` runs, as the
    CPU may be shared with other work."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure(checkpoint: str, device: str, batch: int, n_crops: int, repeat: int) -> tuple[float, float, float]:
    """crops/s of the whole score call, of the image processor and of the image tower."""
    rescorer = ClipRescorer(checkpoint, device=device, batch_size=batch)
    n_images = max(1, n_crops // (BOXES_PER_IMAGE + 1))
    requests, detections = make_inputs(n_images)
    crops = n_images * (BOXES_PER_IMAGE + 1)
    rescorer.score(requests[:1], detections[:1])  # warm-up; later shapes are warm in the second run
    score_s = timed(lambda: rescorer.score(requests, detections), device, repeat)
    images = [r.pixels for r in requests] + [box_pixels(r.pixels, d, r.width, r.height)
                                              for r, dets in zip(requests, detections) for d in dets]
    process_s = timed(lambda: [rescorer.image_processor(images=images[i:i + batch], return_tensors="pt",
                                                        input_data_format="channels_last")
                               for i in range(0, len(images), batch)], "cpu", repeat)
    size = rescorer.model.config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, device=device)

    steps = max(1, crops // batch)

    def forwards() -> None:
        with torch.no_grad(), rescorer.autocast():
            for _ in range(steps):
                rescorer.model.get_image_features(pixel_values=pixels)

    forwards()  # warm-up
    forward_s = timed(forwards, device, repeat)
    return crops / score_s, len(images) / process_s, steps * batch / forward_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--crops", type=int, default=64, help="crops per measurement (default 64)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement, the best kept (default 2)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (default: torch's choice); 1 is steadier on a shared machine")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "vit-b32"], choices=["tiny", "vit-b32"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {args.crops} crops per row, 8 per image (7 boxes + the image); "
          f"best of {args.repeat}")
    print(f"{'model':<8} {'batch':>5} {'score crops/s':>14} {'process crops/s':>16} {'forward crops/s':>16}")
    with tempfile.TemporaryDirectory(prefix="rescore-speed-") as tmp:
        for label, checkpoint in write_checkpoints(Path(tmp), args.sizes).items():
            for batch in args.batch:
                score, process, forward = measure(checkpoint, args.device, batch, args.crops, args.repeat)
                print(f"{label:<8} {batch:>5} {score:>14.1f} {process:>16.1f} {forward:>16.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
