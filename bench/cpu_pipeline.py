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
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

SIZES = {"min_size": 224, "max_size": 320, "batch_size": 8}


def _config(inputs: str, output: str, teacher: str, **extra):
    from pipeline.config import build_config

    return build_config(dict(input=inputs, output=output, teacher=teacher, device="cpu", **SIZES, **extra))


class PlainLoop:
    """The reference: one process, stages one after the other, no threads, no Ray; torch's
    default threads (every core) for the teacher."""

    def __init__(self, teacher_dir: str) -> None:
        from pipeline.stages.prepare import ShardPreparer
        from teacher.load import load_teacher

        cfg = _config("unused", "unused", teacher_dir)
        self.teacher = load_teacher(teacher_dir, cfg.grounding_settings(), device="cpu")
        self.preparer = ShardPreparer(cfg)

    def run(self, inputs: str, output: str) -> tuple[float, int]:
        from pipeline.plan import plan_run
        from pipeline.stages.prepare import PreparedShard, TeacherBatch
        from pipeline.stages.write import apply_detections, write_shard
        from teacher.resilient import predict_resilient

        plan = plan_run(_config(inputs, output, self.teacher.teacher_id))
        t0 = time.perf_counter()
        samples = 0
        for url in plan.todo:
            results = []
            for item in self.preparer.prepare(url):
                if isinstance(item, TeacherBatch):
                    results.append((item.rows, predict_resilient(self.teacher, item.requests)))
                elif isinstance(item, PreparedShard):
                    for rows, dets in results:
                        apply_detections(item, rows, dets)
                    write_shard(item, plan.commit(self.teacher.teacher_id, self.teacher.revision))
                    samples += len(item.rows)
        return time.perf_counter() - t0, samples


class RayPipeline:
    """The Ray runner with its actors loaded once; each `run` labels another input with them."""

    def __init__(self, teacher_dir: str, inputs: str, output: str, **extra) -> None:
        import ray

        from pipeline.plan import plan_run
        from pipeline.runners.ray_runner import RayRunner

        if not ray.is_initialized():
            ray.init(num_cpus=os.cpu_count(), runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, log_to_driver=False)
        self._plan = lambda inputs, output: plan_run(_config(inputs, output, teacher_dir, **extra))
        self.runner = RayRunner(self._plan(inputs, output))

    def run(self, inputs: str, output: str) -> tuple[float, int]:
        self.runner.plan = self._plan(inputs, output)
        t0 = time.perf_counter()
        outcomes = self.runner.run()
        dt = time.perf_counter() - t0
        return dt, sum(o.manifest.samples for o in outcomes if o.manifest)

    def peak_memory(self) -> dict:
        import ray

        return {
            "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "teacher_peak_mb": max(ray.get([a.peak_rss_mb.remote() for a in self.runner.teachers])),
            "cpu_worker_peak_mb": max(ray.get([a.peak_rss_mb.remote() for a in self.runner.preparers])),
        }

    def close(self) -> None:
        import ray

        for actor in self.runner.teachers + self.runner.preparers:
            ray.kill(actor)


def part_speed(work: Path, teacher_dir: str, runs: int, teacher_threads: int | None = None) -> dict:
    """Alternate plain and Ray runs on the same shards. Both keep their loaded workers across
    runs, as a long job does, and both label one warm-up shard first (the teacher's first calls,
    and a just-started local Ray still starting its own processes). The ratio is of the medians."""
    from statistics import median

    from pipeline.tools.sample_shards import write_sample_shards

    inputs = work / "speed-in"
    if not inputs.exists():
        write_sample_shards(str(inputs), shards=10, samples=24, seed=5, max_side=640)
        write_sample_shards(str(work / "warm-in"), shards=1, samples=24, seed=6, max_side=640)
    pattern, warm = str(inputs / "*.tar"), str(work / "warm-in" / "*.tar")
    out = Path(tempfile.mkdtemp(prefix="speed-out-", dir=work))
    started = time.perf_counter()
    plain = PlainLoop(teacher_dir)
    plain.run(warm, str(out / "warm-plain"))
    ray_runs = RayPipeline(teacher_dir, warm, str(out / "warm-ray"), teacher_threads=teacher_threads)
    ray_runs.run(warm, str(out / "warm-ray"))
    warm_up_s = time.perf_counter() - started
    plain_rates, ray_rates = [], []
    for i in range(runs):
        plain_s, n = plain.run(pattern, str(out / f"plain-{i}"))
        ray_s, n2 = ray_runs.run(pattern, str(out / f"ray-{i}"))
        if n != n2 or not n:
            raise RuntimeError(f"plain loop labelled {n} samples, Ray {n2}")
        plain_rates.append(n / plain_s)
        ray_rates.append(n2 / ray_s)
    threads = ray_runs.runner.info["cpu_threads"]
    ray_runs.close()
    return {"samples": n, "runs": runs, "start_and_warm_up_s": warm_up_s, "teacher_actor_threads": threads,
            "plain_loop_samples_per_s": plain_rates, "ray_samples_per_s": ray_rates,
            "ray_over_plain": median(ray_rates) / median(plain_rates)}


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
    from pipeline.tools.sample_shards import write_sample_shards

    inputs = work / f"mem-in-{shards}"
    write_sample_shards(str(inputs), shards=shards, samples=3, seed=9, max_side=256)
    pattern, output = str(inputs / "*.tar"), str(work / f"mem-out-{shards}")
    ray_runs = RayPipeline(teacher_dir, pattern, output)
    dt, n = ray_runs.run(pattern, output)
    mem = ray_runs.peak_memory()
    ray_runs.close()
    return {"shards": shards, "samples": n, "seconds": dt, **mem}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=["speed", "memory", "memory-one", "all"], default="all")
    p.add_argument("--shards", type=int, default=10)
    p.add_argument("--runs", type=int, default=3, help="alternating plain/Ray runs in --part speed")
    p.add_argument("--teacher-threads", type=int, help="the job's --teacher-threads for the Ray teacher actor (default: the job's)")
    p.add_argument("--work")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="cpu-bench-"))
    teacher_dir = work / "tiny"
    if not (teacher_dir / "config.json").exists():
        from teacher.grounding_dino.tiny import write_tiny_teacher

        write_tiny_teacher(teacher_dir)
    if args.part == "memory-one":
        print(json.dumps(part_memory_one(work, str(teacher_dir), args.shards)))
        return 0
    results = {}
    if args.part in ("speed", "all"):
        from statistics import median

        results["speed"] = s = part_speed(work, str(teacher_dir), args.runs, args.teacher_threads)
        print(f"\nsamples/s, tiny teacher, {s['samples']} samples, {os.cpu_count()} cores "
              f"(loading both, starting local Ray, one warm-up shard each: {s['start_and_warm_up_s']:.1f} s; "
              f"teacher actor: {s['teacher_actor_threads']} CPU threads)")
        print("\n| run | plain single-process loop | Ray pipeline | Ray / plain |\n| --- | ---: | ---: | ---: |")
        for i, (a, b) in enumerate(zip(s["plain_loop_samples_per_s"], s["ray_samples_per_s"]), 1):
            print(f"| {i} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
        print(f"| median | {median(s['plain_loop_samples_per_s']):.2f} | {median(s['ray_samples_per_s']):.2f} | "
              f"**{s['ray_over_plain']:.2f}x** |")
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
