"""Faults the job must survive, with real parts: Ray worker processes killed by PID, the driver
killed mid-run, S3 that throttles or refuses, two runs racing for one output. Each ends with
the output contract checked (and `pipeline.tools.verify` where it applies)."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fsspec
import pytest

from tests.jobs.output_checks import check_output
from tests.jobs.running import run_job_subprocess
from tests.project import ROOT
from tests.s3_server import FaultRule

pytestmark = pytest.mark.slow

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
# Full-size-ish inputs make each shard take several seconds on the CPU: time to kill a worker mid-shard.
SLOW_FLAGS = ["--min-size", "480", "--max-size", "640", "--batch-size", "2"]
PIDS = re.compile(r"teacher actor\(s\) on \w+ \(pids \[(\d+)\][^)]*\), \d+ CPU actor\(s\) \(pids \[([\d, ]+)\]\)")


class JobProcess:
    """The job in a subprocess (own session, so the local Ray it starts dies with it), stderr collected."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full = dict(os.environ, **RAY_ENV, **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "jobs" / "label_cc12m.py"), "--no-progress", *args],
            cwd=ROOT, env=full, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: re.Pattern, timeout: float = 240) -> re.Match:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in list(self.lines):
                m = pattern.search(line)
                if m:
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"pattern {pattern.pattern!r} not seen:\n{''.join(self.lines)[-3000:]}")

    def finish(self, timeout: float = 600) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _verify(output: str, pattern: str) -> None:
    from pipeline.tools.verify import main as verify

    assert verify([output, "--input", pattern]) == 0


def _kill_worker_mid_shard(tmp_path, tiny_teacher, which: int) -> None:
    from pipeline.tools.sample_shards import write_sample_shards

    inputs = tmp_path / "in"
    write_sample_shards(str(inputs), shards=3, samples=12, seed=11)
    pattern = str(inputs / "*.tar")
    out = tmp_path / "out"
    job = JobProcess(["--input", pattern, "--output", str(out), "--teacher", tiny_teacher, *SLOW_FLAGS,
                      "--shards-in-flight", "1"])
    m = job.wait_for(PIDS)
    pid = int(m.group(1)) if which == 1 else int(m.group(2).split(",")[0])
    time.sleep(1.5)  # shards start right after the actors report; one is in progress now
    done_before = list((out / "_manifests").glob("*.json"))
    os.kill(pid, signal.SIGKILL)
    rc = job.finish()
    assert len(done_before) < 3, "the kill must land before every shard is done"
    assert rc == 0, job.text[-4000:]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    check_output(str(out), pattern)
    _verify(str(out), pattern)


def test_teacher_worker_killed_mid_shard(tmp_path, tiny_teacher):
    _kill_worker_mid_shard(tmp_path, tiny_teacher, which=1)


def test_cpu_worker_killed_mid_shard(tmp_path, tiny_teacher):
    _kill_worker_mid_shard(tmp_path, tiny_teacher, which=2)


def _digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_driver_killed_then_same_command_resumes(tmp_path, tiny_teacher):
    from pipeline.tools.sample_shards import write_sample_shards

    inputs = tmp_path / "in"
    write_sample_shards(str(inputs), shards=4, samples=6, seed=3)
    pattern = str(inputs / "{00000..00003}.tar")
    out = tmp_path / "out"
    args = ["--input", pattern, "--output", str(out), "--teacher", tiny_teacher, *SLOW_FLAGS, "--cpu-workers", "1", "--shards-in-flight", "1"]
    job = JobProcess(args)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "_manifests").glob("*.json")):
        time.sleep(0.2)
    os.killpg(job.proc.pid, signal.SIGKILL)
    job.finish()
    finished = {p.stem: _digest(out / "parquet" / f"{p.stem}.parquet") for p in (out / "_manifests").glob("*.json")}
    assert 1 <= len(finished) < 4, "the driver must die mid-run"
    stray = out / "parquet" / ".tmp-00003.parquet.leftover"
    stray.write_bytes(b"partial")  # what a publish cut short leaves behind
    proc = run_job_subprocess(args, env=RAY_ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"{len(finished)} already done" in proc.stderr
    for shard, digest in finished.items():
        assert _digest(out / "parquet" / f"{shard}.parquet") == digest, "finished shards are not rewritten"
    assert not stray.exists(), "temporary files of the killed run are cleaned up"
    check_output(str(out), pattern)
    _verify(str(out), pattern)


def _shards(tmp_path, n: int = 4) -> str:
    from pipeline.tools.sample_shards import write_sample_shards

    write_sample_shards(str(tmp_path / "in"), shards=n, samples=6, seed=3)
    return str(tmp_path / "in" / f"{{00000..{n - 1:05d}}}.tar")


def _first_manifest(out: Path, job: JobProcess, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not list((out / "_manifests").glob("*.json")):
        assert job.proc.poll() is None, job.text[-3000:]
        time.sleep(0.2)


@pytest.mark.parametrize("runner", ["inprocess", "ray"])
def test_ctrl_c_stops_the_run_at_once_with_one_sentence(tmp_path, tiny_teacher, runner):
    pattern = _shards(tmp_path)
    out = tmp_path / "out"
    args = ["--input", pattern, "--output", str(out), "--teacher", tiny_teacher, *SLOW_FLAGS, "--runner", runner,
            "--cpu-workers", "1", "--shards-in-flight", "1"]
    job = JobProcess(args)
    _first_manifest(out, job)
    os.killpg(job.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole process group
    asked = time.time()
    assert job.finish(timeout=120) == 130, job.text[-3000:]
    stopped_in = time.time() - asked
    assert "interrupted:" in job.text and "run the same command again" in job.text
    assert "Traceback" not in job.text, job.text[-3000:]
    assert len(list((out / "_manifests").glob("*.json"))) < 4, f"the run went on after Ctrl-C ({stopped_in:.0f} s)"
    if runner == "inprocess":  # the same command finishes the run (the runner plays no part in resuming)
        proc = run_job_subprocess(args, env=RAY_ENV)
        assert proc.returncode == 0, proc.stderr[-4000:]
        _verify(str(out), pattern)


def _verify_unfinished_are_named(output: str, pattern: str, unfinished: int) -> None:
    """What is published is whole, and verify names each shard the run did not finish."""
    from pipeline.tools.verify import verify_output

    report = verify_output(output, pattern)
    assert all(s.ok for s in report.shards) and not report.violations, report.lines()
    assert len(report.unfinished) == unfinished, report.lines()


def _spawned_workers(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]


# Batches of 4096 cannot fit in /dev/shm, so they go through the pipe the workers share; a worker
# killed while writing into it leaves a half-written message there.
# Shards: enough that the workers, which prepare a few shards ahead of the teacher (more with one
# batch per shard), are still busy when one is killed.
@pytest.mark.parametrize("transport_flags,n", [([], 8), (["--batch-size", "4096"], 24)], ids=["shm", "pipe"])
def test_inprocess_cpu_worker_killed_fails_the_shards_it_leaves_and_the_run(tmp_path, tiny_teacher, transport_flags, n):
    pattern = _shards(tmp_path, n)
    out = tmp_path / "out"
    args = ["--input", pattern, "--output", str(out), "--teacher", tiny_teacher, *SLOW_FLAGS, "--runner", "inprocess",
            "--cpu-workers", "2", *transport_flags]
    job = JobProcess(args)
    _first_manifest(out, job)
    workers = _spawned_workers(job.proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    assert job.finish(timeout=180) == 1, job.text[-3000:]
    assert ("pipes" in job.text) == bool(transport_flags), job.text[-3000:]
    done = len(list((out / "_manifests").glob("*.json")))
    assert done < n
    assert job.text.count("a CPU worker process died (exit code -9)") >= n - done, job.text[-3000:]
    assert f"{n - done} failed, of {n}" in job.text, job.text[-3000:]
    _verify_unfinished_are_named(str(out), pattern, n - done)


def test_two_runs_on_one_output_do_not_interleave(tmp_path, tiny_teacher, generated_shards):
    pattern = str(generated_shards / "*.tar")
    out = tmp_path / "out"
    first = JobProcess(["--input", pattern, "--output", str(out), "--teacher", tiny_teacher, *SLOW_FLAGS])
    first.wait_for(re.compile(r"to label \(config"))
    time.sleep(1.0)
    second = run_job_subprocess(["--input", pattern, "--output", str(out), "--teacher", tiny_teacher,
                                 "--runner", "inprocess", "--box-threshold", "0.3", "--overwrite"], env=RAY_ENV)
    assert second.returncode == 3, second.stderr[-2000:]
    assert "is locked by run" in second.stderr
    assert first.finish() == 0, first.text[-3000:]
    check_output(str(out), pattern)


def _s3_inputs(s3_env, generated_shards) -> str:
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_env.endpoint})
    for f in sorted(generated_shards.glob("*.tar")):
        fs.put_file(str(f), f"{s3_env.bucket}/in/{f.name}")
    return s3_env.url("in", "{00000..00001}.tar")


def test_s3_transient_faults_are_retried_and_output_matches_a_clean_run(tmp_path, tiny_teacher, generated_shards, s3_env, fault_proxy):
    pattern = _s3_inputs(s3_env, generated_shards)
    flags = ["--teacher", tiny_teacher, "--runner", "inprocess", "--min-size", "128", "--max-size", "224"]
    clean = run_job_subprocess(["--input", pattern, "--output", s3_env.url("clean"), *flags], env=s3_env.env_vars())
    assert clean.returncode == 0, clean.stderr[-3000:]
    fault_proxy.set_rules(
        FaultRule("slowdown", methods=frozenset({"PUT"}), fraction=0.3, max_faults=6),
        FaultRule("reset", methods=frozenset({"GET"}), fraction=0.2, max_faults=4),
    )
    env = dict(s3_env.env_vars(), AWS_ENDPOINT_URL=fault_proxy.endpoint)
    faulty = run_job_subprocess(["--input", pattern, "--output", s3_env.url("faulty"), *flags], env=env)
    assert faulty.returncode == 0, faulty.stderr[-3000:]
    assert sum(r.injected for r in fault_proxy.rules) > 0
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_env.endpoint}, skip_instance_cache=True)
    for shard in ("00000", "00001"):
        for sub, ext in (("parquet", "parquet"), ("wds", "tar")):
            a = fs.cat_file(f"{s3_env.bucket}/clean/{sub}/{shard}.{ext}")
            b = fs.cat_file(f"{s3_env.bucket}/faulty/{sub}/{shard}.{ext}")
            assert a == b, f"{sub}/{shard} differs after retried faults"


def test_s3_permanent_failure_fails_those_shards_clearly_and_others_finish(tmp_path, tiny_teacher, generated_shards, s3_env, fault_proxy):
    pattern = _s3_inputs(s3_env, generated_shards)
    fault_proxy.set_rules(FaultRule("forbidden", path_regex=r"/out/wds/00001\.tar"))
    env = dict(s3_env.env_vars(), AWS_ENDPOINT_URL=fault_proxy.endpoint)
    proc = run_job_subprocess(["--input", pattern, "--output", s3_env.url("out"), "--teacher", tiny_teacher,
                               "--runner", "inprocess", "--min-size", "128", "--max-size", "224"], env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert re.search(r"FAILED shard 00001: .*(denied|Forbidden|403|permission)", proc.stderr, re.I), proc.stderr[-3000:]
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_env.endpoint}, skip_instance_cache=True)
    assert fs.exists(f"{s3_env.bucket}/out/_manifests/00000.json")
    assert not fs.exists(f"{s3_env.bucket}/out/_manifests/00001.json")

    missing = run_job_subprocess(["--input", pattern, "--output", "s3://no-such-bucket-here/out", "--teacher", tiny_teacher,
                                  "--runner", "inprocess"], env=s3_env.env_vars())
    assert missing.returncode == 2, missing.stderr[-2000:]
    assert "no-such-bucket-here" in missing.stderr and "Traceback" not in missing.stderr
