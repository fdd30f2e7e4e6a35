"""CPU-side figures on this machine: the Ray pipeline vs a plain single-process loop doing the
same work (tiny teacher), per-stage rates per core, and peak memory for 10 vs 100 shards.

    python bench/cpu_pipeline.py                # all three parts
    python bench/cpu_pipeline.py --part memory  # one part
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

SIZES = {"min_size": 224, "max_size": 320, "batch_size": 8}


def _config(inputs: str, output: str, teacher: str, **extra):
    from pipeline.config import build_config

    return build_config(dict(input=inputs, output=output, teacher=teacher, device="cpu", **SIZES, **extra))


def plain_loop(inputs: str, output: str, teacher_dir: str) -> tuple[float, int]:
    """The reference: one process, stages one after the other, no threads, no Ray."""
    from pipeline.prepare import PreparedShard, ShardPreparer, TeacherBatch
    from pipeline.run import plan_run
    from pipeline.writer import apply_detections, write_shard
    from teacher.load import load_teacher
    from teacher.resilient import predict_resilient

    plan = plan_run(_config(inputs, output, teacher_dir))
    teacher = load_teacher(teacher_dir, plan.config.grounding_settings(), device="cpu")
    preparer = ShardPreparer(plan.config)
    t0 = time.perf_counter()
    samples = 0
    for url in plan.todo:
        results = []
        for item in preparer.prepare(url):
            if isinstance(item, TeacherBatch):
                results.append((item.rows, predict_resilient(teacher, item.requests)))
            elif isinstance(item, PreparedShard):
                for rows, dets in results:
                    apply_detections(item, rows, dets)
                write_shard(item, output=output, config_hash=plan.config_hash, settings=plan.settings,
                            teacher_id=teacher.teacher_id, teacher_revision=teacher.revision, run_id=plan.run_id)
                samples += len(item.rows)
    return time.perf_counter() - t0, samples


def ray_pipeline(inputs: str, output: str, teacher_dir: str) -> tuple[float, int, dict]:
    """The Ray runner; time from the first shard submitted (actors already loaded)."""
    import ray

    from pipeline.ray_runner import RayRunner
    from pipeline.run import plan_run

    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, log_to_driver=False)
    plan = plan_run(_config(inputs, output, teacher_dir))
    runner = RayRunner(plan)
    t0 = time.perf_counter()
    outcomes = runner.run()
    dt = time.perf_counter() - t0
    samples = sum(o.manifest.samples for o in outcomes if o.manifest)
    mem = {
        "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "teacher_peak_mb": max(ray.get([a.peak_rss_mb.remote() for a in runner.teachers])),
        "cpu_worker_peak_mb": max(ray.get([a.peak_rss_mb.remote() for a in runner.preparers])),
    }
    for actor in runner.teachers + runner.preparers:
        ray.kill(actor)
    return dt, samples, mem


def part_speed(work: Path, teacher_dir: str) -> dict:
    from pipeline.samples import write_sample_shards

    inputs = work / "speed-in"
    write_sample_shards(str(inputs), shards=6, samples=24, seed=5, max_side=640)
    pattern = str(inputs / "*.tar")
    plain_s, n = plain_loop(pattern, str(work / "speed-plain"), teacher_dir)
    ray_s, n2, _ = ray_pipeline(pattern, str(work / "speed-ray"), teacher_dir)
    assert n == n2
    return {"samples": n, "plain_loop_samples_per_s": n / plain_s, "ray_samples_per_s": n2 / ray_s,
            "ray_over_plain": (n2 / ray_s) / (n / plain_s)}


def part_memory(work: Path, teacher_dir: str) -> dict:
    """Peak RSS in a fresh process per size, so one run's peak does not hide in the other's."""
    import subprocess

    out = {}
    for shards in (10, 100):
        proc = subprocess.run([sys.executable, __file__, "--part", "memory-one", "--shards", str(shards), "--work", str(work)],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        out[shards] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def part_memory_one(work: Path, teacher_dir: str, shards: int) -> dict:
    from pipeline.samples import write_sample_shards

    inputs = work / f"mem-in-{shards}"
    write_sample_shards(str(inputs), shards=shards, samples=3, seed=9, max_side=256)
    dt, n, mem = ray_pipeline(str(inputs / "*.tar"), str(work / f"mem-out-{shards}"), teacher_dir)
    return {"shards": shards, "samples": n, "seconds": dt, **mem}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=["speed", "memory", "memory-one", "all"], default="all")
    p.add_argument("--shards", type=int, default=10)
    p.add_argument("--work")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="cpu-bench-"))
    teacher_dir = work / "tiny"
    if not (teacher_dir / "config.json").exists():
        from teacher.tiny import write_tiny_teacher

        write_tiny_teacher(teacher_dir)
    if args.part == "memory-one":
        print(json.dumps(part_memory_one(work, str(teacher_dir), args.shards)))
        return 0
    results = {}
    if args.part in ("speed", "all"):
        results["speed"] = s = part_speed(work, str(teacher_dir))
        print("\n| pipeline (tiny teacher, %d samples, %d cores) | samples/s |\n| --- | ---: |" % (s["samples"], os.cpu_count()))
        print(f"| plain single-process loop | {s['plain_loop_samples_per_s']:.2f} |")
        print(f"| Ray pipeline | {s['ray_samples_per_s']:.2f} |")
        print(f"| ratio Ray / plain | {s['ray_over_plain']:.2f}x |")
    if args.part in ("memory", "all"):
        results["memory"] = m = part_memory(work, str(teacher_dir))
        print("\n| shards | samples | driver peak MB | teacher actor peak MB | CPU actor peak MB |\n| ---: | ---: | ---: | ---: | ---: |")
        for k, v in m.items():
            print(f"| {k} | {v['samples']} | {v['driver_peak_mb']:.0f} | {v['teacher_peak_mb']:.0f} | {v['cpu_worker_peak_mb']:.0f} |")
        for key in ("driver_peak_mb", "teacher_peak_mb", "cpu_worker_peak_mb"):
            print(f"{key}: 100 vs 10 shards = {m[100][key] / m[10][key]:.3f}x")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
