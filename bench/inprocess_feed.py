"""Does the in-process runner keep a GPU teacher fed? Measured here, without a GPU, with a stand-in.

A GPU teacher spends part of each batch in Python holding the GIL (tokenising, launching kernels,
post-processing) and the rest waiting on the GPU with the GIL released. `StandInTeacher` does
exactly that for fixed times, after copying the batch's pixels as the real one copies them into
its staging buffer, so what the runner does around it (receiving batches from the worker
processes, writing shards) competes for the GIL and the cores as it would on a GPU node. The
table compares, in one run, the stand-in alone on prepared batches with the whole pipeline for
each transport (pipes, shared memory).

    python bench/inprocess_feed.py                        # a launch-bound and a GPU-bound teacher
    python bench/inprocess_feed.py --regimes 120:120 --cpu-workers 2
    python bench/inprocess_feed.py --regimes 40:40:200,40:120:200   # 1 vs 2 concurrent callers
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from shard_args import add_shard_args


class StandInTeacher:
    teacher_id = "stand-in"
    revision = "0"
    device = "cpu"
    concurrent_calls = 1

    def __init__(self, hold_ms: float, wait_ms: float) -> None:
        self.hold = hold_ms / 1000.0
        self.wait = wait_ms / 1000.0
        self.local = threading.local()

    def copy_to_staging(self, requests) -> None:
        """Copy the batch's pixels into this thread's staging buffer, as the real teacher pads them."""
        total = sum(r.pixels.size for r in requests)
        staging = getattr(self.local, "staging", None)
        if staging is None or staging.size < total:
            staging = self.local.staging = np.empty(total, dtype=np.uint8)
        offset = 0
        for r in requests:
            staging[offset : offset + r.pixels.size] = r.pixels.reshape(-1)
            offset += r.pixels.size

    def predict(self, requests):
        self.copy_to_staging(requests)
        _spin(self.hold)
        time.sleep(self.wait)
        return [[] for _ in requests]


class OverlappingStandIn(StandInTeacher):
    """A GPU teacher that takes `callers` concurrent calls, as `GroundingDinoTeacher` does on a GPU.

    Per batch: the pixel copy and `host_ms` of GIL-held host work (half before, half after) run
    outside a device lock; inside it the "GPU" runs for `gpu_ms` while Python holds the GIL for
    `launch_ms` launching its kernels, in parallel (asynchronous launches), so the device pass
    takes max(launch, gpu) when nothing competes for the GIL.
    """

    def __init__(self, host_ms: float, launch_ms: float, gpu_ms: float, callers: int) -> None:
        super().__init__(launch_ms, 0.0)
        self.host = host_ms / 1000.0
        self.gpu = gpu_ms / 1000.0
        self.concurrent_calls = callers
        self.lock = threading.Lock()

    def predict(self, requests):
        self.copy_to_staging(requests)
        _spin(self.host / 2)
        with self.lock:
            gpu_done = time.perf_counter() + self.gpu
            _spin(self.hold)
            time.sleep(max(0.0, gpu_done - time.perf_counter()))
        _spin(self.host / 2)
        return [[] for _ in requests]


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def measure_callers(regime: tuple[float, float, float], batches: list, base: dict, work: Path, cpu_workers: int, runs: int) -> dict:
    """The overlapping stand-in alone and in the pipeline (shared memory), with 1 and 2 callers."""
    from concurrent.futures import ThreadPoolExecutor
    from statistics import median

    from pipeline.config import build_config
    from pipeline.plan import plan_run
    from pipeline.runners.inprocess import InProcessRunner

    images = sum(len(b.requests) for b in batches)
    result: dict = {}
    for callers in (1, 2):
        teacher = OverlappingStandIn(*regime, callers=callers)
        t = time.perf_counter()
        with ThreadPoolExecutor(callers) as pool:
            list(pool.map(lambda b: teacher.predict(b.requests), batches))
        alone = images / (time.perf_counter() - t)
        rates = []
        for _ in range(runs):
            cfg = build_config(dict(base, output=tempfile.mkdtemp(prefix=f"out-{callers}-", dir=work)))
            runner = InProcessRunner(plan_run(cfg), teacher, cpu_workers=cpu_workers, transport="shm")
            outcomes = runner.run()
            stats = runner.stats
            if any(o.error for o in outcomes):
                raise RuntimeError(str([o.error for o in outcomes if o.error]))
            rates.append(stats["teacher_images"] / (stats["last_batch_done_at"] - stats["first_batch_at"]))
        result[callers] = {"alone": alone, "pipeline": median(rates), "runs": rates}
    return result


def measure(teacher: StandInTeacher, batches: list, base: dict, work: Path, cpu_workers: int, runs: int) -> dict:
    """The stand-in alone on prepared batches, then the pipeline per transport (medians)."""
    from statistics import median

    from pipeline.config import build_config
    from pipeline.plan import plan_run
    from pipeline.runners.inprocess import InProcessRunner

    images = sum(len(b.requests) for b in batches)
    t = time.perf_counter()
    for b in batches:
        teacher.predict(b.requests)
    alone = images / (time.perf_counter() - t)
    result: dict = {"alone": alone}
    for transport in ("pipe", "shm"):
        rates, waits, slowdown = [], [], []
        for run in range(runs):
            cfg = build_config(dict(base, output=tempfile.mkdtemp(prefix=f"out-{transport}-", dir=work)))
            runner = InProcessRunner(plan_run(cfg), teacher, cpu_workers=cpu_workers, transport=transport)
            outcomes = runner.run()
            stats = runner.stats
            if any(o.error for o in outcomes) or stats["transport"] != transport:
                raise RuntimeError(f"{transport}: {[o.error for o in outcomes if o.error]} {stats}")
            steady = stats["last_batch_done_at"] - stats["first_batch_at"]
            rates.append(stats["teacher_images"] / steady)
            waits.append(stats["wait_seconds"] / steady)
            slowdown.append(stats["teacher_seconds"] / (images / alone))
        result[transport] = {"images_per_s": median(rates), "runs": rates, "waiting": median(waits), "teacher_time": median(slowdown)}
    return result


def main() -> int:
    p = argparse.ArgumentParser()
    add_shard_args(p, shards=6, samples=32)
    p.add_argument("--min-size", type=int, default=800)
    p.add_argument("--max-size", type=int, default=1333)
    p.add_argument("--regimes", default="200:40,40:200",
                   help="stand-in per-batch milliseconds holding:releasing the GIL, comma-separated; "
                        "HOST:LAUNCH:GPU (three numbers) measures 1 vs 2 concurrent callers instead")
    p.add_argument("--cpu-workers", type=int, default=1)
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()

    from pipeline.config import build_config
    from pipeline.stages.prepare import ShardPreparer, TeacherBatch
    from pipeline.tools.sample_shards import write_sample_shards

    work = Path(tempfile.mkdtemp(prefix="inprocess-feed-"))
    write_sample_shards(str(work / "in"), shards=args.shards, samples=args.samples, seed=3, max_side=args.max_side)
    base = dict(input=str(work / "in" / "*.tar"), teacher="stand-in", batch_size=args.batch_size,
                min_size=args.min_size, max_size=args.max_size)
    preparer = ShardPreparer(build_config(dict(base, output=str(work / "unused"))))
    batches = [item for url in sorted(str(u) for u in (work / "in").glob("*.tar"))
               for item in preparer.prepare(url) if isinstance(item, TeacherBatch)]
    images = sum(len(b.requests) for b in batches)
    mb = np.mean([sum(r.pixels.nbytes for r in b.requests) for b in batches]) / 2**20
    print(f"\n{images} images in {len(batches)} batches ({mb:.1f} MB of pixels each), {args.cpu_workers} CPU worker "
          f"process(es), {args.runs} runs per cell (median); steady state: first teacher call to the end of the last\n")
    results = {}
    two_part = [r for r in args.regimes.split(",") if r.count(":") == 1]
    if two_part:
        print("| stand-in per batch (GIL held + released) | measurement | images/s | / teacher alone | waiting for batches | "
              "teacher time / alone |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for regime in two_part:
        hold, wait = (float(x) for x in regime.split(":"))
        r = results[regime] = measure(StandInTeacher(hold, wait), batches, base, work, args.cpu_workers, args.runs)
        name = f"{hold:.0f} + {wait:.0f} ms"
        print(f"| {name} | teacher alone on prepared batches | {r['alone']:.1f} | 1.00x | | 1.00x |")
        for transport in ("pipe", "shm"):
            t = r[transport]
            print(f"| {name} | pipeline, batches through {transport} | {t['images_per_s']:.1f} | "
                  f"{t['images_per_s'] / r['alone']:.2f}x | {t['waiting']:.0%} | {t['teacher_time']:.2f}x |", flush=True)
    three_part = [r for r in args.regimes.split(",") if r.count(":") == 2]
    if three_part:
        print("\n| stand-in per batch (host + launch, GPU) | callers | teacher alone, images/s | pipeline (shm), images/s | "
              "pipeline / one caller alone |\n| --- | ---: | ---: | ---: | ---: |")
    for regime in three_part:
        host, launch, gpu = (float(x) for x in regime.split(":"))
        r = results[regime] = measure_callers((host, launch, gpu), batches, base, work, args.cpu_workers, args.runs)
        for callers in (1, 2):
            print(f"| {host:.0f} + {launch:.0f} ms, {gpu:.0f} ms | {callers} | {r[callers]['alone']:.1f} | "
                  f"{r[callers]['pipeline']:.1f} | {r[callers]['pipeline'] / r[1]['alone']:.2f}x |", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
