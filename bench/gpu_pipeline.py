"""Teacher-only rate vs the in-process pipeline rate (read, parse, decode, teacher, write).

Prepared for one `device` run on a GPU machine (no Ray there): it writes a full-size random
Grounding DINO (Swin-T, the default config) and sample shards, measures the teacher alone on
prepared batches, then the whole pipeline with CPU worker processes, and prints a table.

    python bench/gpu_pipeline.py --shards 8 --samples 64 --cpu-workers 12   # both transports
    python bench/gpu_pipeline.py --device cpu --tiny --shards 2 --samples 8   # smoke run here
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shard_args import add_shard_args


def write_full_teacher(out: Path) -> Path:
    """The default GroundingDinoConfig (Swin-T backbone), random weights, our offline vocabulary."""
    import torch
    from transformers import BertConfig, BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection

    from teacher.grounding_dino.tiny import build_vocab

    out.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab()
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(out / "vocab.txt"), do_lower_case=True, model_max_length=256).save_pretrained(out)
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(GroundingDinoConfig(text_config=BertConfig(vocab_size=len(vocab))))
    model.save_pretrained(out, safe_serialization=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    add_shard_args(p, shards=8, samples=64)
    p.add_argument("--cpu-workers", type=int, default=12)
    p.add_argument("--device", default="cuda")
    p.add_argument("--transports", default="shm,pipe", help="how worker processes hand batches over, each measured")
    p.add_argument("--tiny", action="store_true", help="tiny model and small inputs (CPU smoke run)")
    args = p.parse_args()

    from pipeline.config import build_config
    from pipeline.plan import plan_run
    from pipeline.runners.inprocess import InProcessRunner
    from pipeline.stages.batching import padding_efficiency
    from pipeline.stages.prepare import ShardPreparer, TeacherBatch
    from teacher.load import load_teacher
    from teacher.protocol import GroundingSettings
    from teacher.resilient import predict_resilient

    work = Path(tempfile.mkdtemp(prefix="gpu-pipeline-"))
    t0 = time.perf_counter()
    _write_shards_parallel(work / "in", args.shards, args.samples, args.max_side)
    if args.tiny:
        from teacher.grounding_dino.tiny import write_tiny_teacher

        ckpt = write_tiny_teacher(work / "teacher")
        sizes = {"min_size": 320, "max_size": 512}
    else:
        ckpt = write_full_teacher(work / "teacher")
        sizes = {}
    print(f"setup {time.perf_counter() - t0:.1f}s", flush=True)
    base = dict(input=str(work / "in" / "*.tar"), teacher=str(ckpt), batch_size=args.batch_size, device=args.device, **sizes)
    settings = GroundingSettings()
    results: dict[str, dict] = {}

    preparer = ShardPreparer(build_config(dict(base, output=str(work / "unused"))))
    batches: list[TeacherBatch] = []
    for url in sorted(str(u) for u in (work / "in").glob("*.tar")):
        for item in preparer.prepare(url):
            if isinstance(item, TeacherBatch):
                batches.append(item)
    n_images = sum(len(b.requests) for b in batches)
    teachers: dict[bool, object] = {}
    for label, fast, callers in (("teacher eager bf16", False, 1), ("teacher fast", True, 1), ("teacher fast, 2 callers", True, 2)):
        try:
            if fast not in teachers:
                teachers.clear()  # one model on the device at a time
                teachers[fast] = load_teacher(str(ckpt), settings, device=args.device, fast=fast)
                predict_resilient(teachers[fast], batches[0].requests)  # warm-up
                predict_resilient(teachers[fast], batches[-1].requests)
            teacher = teachers[fast]
            _sync(args.device)
            t = time.perf_counter()
            with ThreadPoolExecutor(callers) as pool:
                list(pool.map(lambda b: predict_resilient(teacher, b.requests), batches))
            _sync(args.device)
            dt = time.perf_counter() - t
            results[label] = {"images": n_images, "seconds": dt, "images_per_s": n_images / dt,
                              "fast_modules": getattr(teacher, "fast_modules", 0),
                              "tensor_checks_skipped": getattr(teacher, "skip_tensor_checks", False),
                              "padding": padding_efficiency([[r.pixels.shape[:2] for r in b.requests] for b in batches])}
            print(label, results[label], flush=True)
        except Exception as exc:  # noqa: BLE001 - one failing variant still prints the others
            results[label] = {"error": f"{exc.__class__.__name__}: {exc}"}
            print(label, results[label], flush=True)

    fast_teacher = teachers.get(True)
    for transport in args.transports.split(","):
        label = f"pipeline in-process, batches through {transport}"
        try:
            cfg = build_config(dict(base, output=str(work / f"out-{transport}"), cpu_workers=args.cpu_workers))
            if fast_teacher is None:
                fast_teacher = load_teacher(str(ckpt), settings, device=args.device, fast=True)
                predict_resilient(fast_teacher, batches[0].requests)
            t = time.perf_counter()
            runner = InProcessRunner(plan_run(cfg), fast_teacher, cpu_workers=args.cpu_workers, transport=transport)
            outcomes = runner.run()
            stats = runner.stats
            t_end = time.perf_counter()
            ok = sum(o.manifest.status_counts.get("ok", 0) for o in outcomes if o.manifest)
            errors = [o.error for o in outcomes if o.error]
            results[label + ", whole run"] = {"images": ok, "seconds": t_end - t, "images_per_s": ok / (t_end - t)}
            steady = stats["last_batch_done_at"] - stats["first_batch_at"]
            results[label] = {"images": stats["teacher_images"], "seconds": steady,
                              "images_per_s": stats["teacher_images"] / steady, "errors": errors[:3],
                              "transport": stats.get("transport"),
                              "waiting_for_batches": stats["wait_seconds"] / steady,
                              "teacher_busy": stats["teacher_seconds"] / steady,
                              "timings": [o.manifest.timings for o in outcomes if o.manifest][:2]}
            print(label, results[label], flush=True)
        except Exception as exc:  # noqa: BLE001
            results[label] = {"error": f"{exc.__class__.__name__}: {exc}"}
            print(label, results[label], flush=True)

    print("\n| measurement | images | seconds | images/s |\n| --- | ---: | ---: | ---: |")
    for label, r in results.items():
        if "error" in r:
            print(f"| {label} | failed: {r['error'][:80]} | | |")
        else:
            print(f"| {label} | {r['images']} | {r['seconds']:.2f} | {r['images_per_s']:.1f} |")
    for teacher_label in ("teacher fast", "teacher fast, 2 callers"):
        fast_rate = results.get(teacher_label, {}).get("images_per_s")
        for transport in args.transports.split(","):
            r = results.get(f"pipeline in-process, batches through {transport}", {})
            if fast_rate and r.get("images_per_s"):
                print(f"pipeline through {transport} (steady state) / {teacher_label} (batch {args.batch_size}): "
                      f"{r['images_per_s'] / fast_rate:.2f}x; teacher busy {r['teacher_busy']:.0%}, "
                      f"waiting for batches {r['waiting_for_batches']:.0%}")
    if "padding" in results.get("teacher fast", {}):
        print(f"real / padded pixels of the teacher batches: {results['teacher fast']['padding']:.3f}")
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_pipeline.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


def _write_one(job: tuple[str, int, int, int]) -> None:
    from pipeline.tools.sample_shards import write_sample_shards

    out, shard, samples, max_side = job
    write_sample_shards(out, shards=1, samples=samples, seed=1, start=shard, max_side=max_side)


def _write_shards_parallel(out: Path, shards: int, samples: int, max_side: int) -> None:
    from multiprocessing import get_context

    with get_context("spawn").Pool(min(shards, os.cpu_count() or 1)) as pool:
        pool.map(_write_one, [(str(out), i, samples, max_side) for i in range(shards)])


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())
