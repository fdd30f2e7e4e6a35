"""Host work of one `GroundingDinoTeacher.predict` call, apart from its device pass.

On a GPU a call is: host work before (prompts, tokenising, phrase maps, padding the images into
the staging buffer), the device pass (upload, forward, scores), host work after (NMS per image).
With one caller the GPU idles during the host work; with two (`concurrent_calls`) one call's
host work overlaps the other's device pass. This measures the host parts on this CPU with the
tiny teacher on generated images at the full 800/1333 input size (the device pass here is a CPU
forward and is not reported).

    python bench/teacher_host_work.py --batches 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()

    import torch

    from pipeline.config import build_config
    from pipeline.stages.prepare import ShardPreparer, TeacherBatch
    from pipeline.tools.sample_shards import write_sample_shards
    from teacher.grounding_dino.tiny import write_tiny_teacher
    from teacher.load import load_teacher

    work = Path(tempfile.mkdtemp(prefix="host-work-"))
    shard = write_sample_shards(work / "in", shards=1, samples=args.batches * args.batch_size, seed=2, max_side=1024)[0]
    ckpt = write_tiny_teacher(work / "teacher")
    cfg = build_config({"input": shard, "output": str(work / "out"), "teacher": str(ckpt), "device": "cpu",
                        "batch_size": args.batch_size})
    teacher = load_teacher(str(ckpt), cfg.grounding_settings(), device="cpu")
    batches = [b for b in ShardPreparer(cfg).prepare(shard) if isinstance(b, TeacherBatch)]

    marks: dict[str, float] = {}
    device_pass = teacher._device_pass

    def timed_device_pass(*a, **k):
        marks["device_start"] = time.perf_counter()
        out = device_pass(*a, **k)
        marks["device_end"] = time.perf_counter()
        return out

    teacher._device_pass = timed_device_pass
    teacher.predict(batches[0].requests)  # warm-up
    before, after, pixels = [], [], []
    for b in batches:
        t0 = time.perf_counter()
        teacher.predict(b.requests)
        t1 = time.perf_counter()
        before.append(marks["device_start"] - t0)
        after.append(t1 - marks["device_end"])
        pixels.append(len(b.requests) * max(r.pixels.shape[0] for r in b.requests) * max(r.pixels.shape[1] for r in b.requests))
    print(f"tiny teacher, {len(batches)} batches of {args.batch_size} at 800/1333 "
          f"({statistics.mean(pixels) / args.batch_size / 1e6:.2f} MP padded per image), torch threads {torch.get_num_threads()}")
    print("| host part of predict | median ms per batch |\n| --- | ---: |")
    print(f"| before the device pass (prompts, tokenising, phrase maps, padding into staging) | {1e3 * statistics.median(before):.1f} |")
    print(f"| after it (unpacking, threshold, NMS per image, merging) | {1e3 * statistics.median(after):.1f} |")
    print(f"| total | {1e3 * (statistics.median(before) + statistics.median(after)):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
