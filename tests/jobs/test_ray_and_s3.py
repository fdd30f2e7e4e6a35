"""The same flow through Ray (local instance and `ray job submit`) and on s3:// (moto server)."""

from __future__ import annotations

import fsspec
import pytest

from tests.jobs.output_checks import check_output
from tests.jobs.running import copy_inputs, run_job_subprocess
from tests.project import FAST_FLAGS, ROOT
from tests.ray_cluster import LocalRayCluster

pytestmark = pytest.mark.slow

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


def test_job_on_local_ray(tmp_path, tiny_teacher, generated_shards, cc12m_shard):
    inputs = copy_inputs(tmp_path / "in", generated_shards, cc12m_shard)
    (inputs / "broken.tar").mkdir()  # matched by the glob; no retry can read a folder
    pattern = str(inputs / "{00000,00001,cc12m-train-0000}.tar")
    out = tmp_path / "out"
    proc = run_job_subprocess(["--input", str(inputs / "*.tar"), "--output", str(out), "--teacher", tiny_teacher, "--teacher-threads", "1", *FAST_FLAGS], env=RAY_ENV)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "3 shard(s) labelled" in proc.stderr
    assert "FAILED shard broken" in proc.stderr and "after 1 attempt(s): IsADirectoryError" in proc.stderr, proc.stderr[-3000:]
    assert "1 CPU threads each" in proc.stderr
    totals = check_output(str(out), pattern)
    assert totals["rows"] == 56


def test_job_with_input_and_output_on_s3(tmp_path, tiny_teacher, generated_shards, s3_env):
    fs = fsspec.filesystem("s3")
    for f in sorted(generated_shards.glob("*.tar")):
        fs.put_file(str(f), f"{s3_env.bucket}/cc12m/{f.name}")
    fs.pipe_file(f"{s3_env.bucket}/cc12m/00000_stats.json", b"{}")  # img2dataset extras are ignored
    pattern = s3_env.url("cc12m", "{00000..00001}.tar")
    output = s3_env.url("boxes")
    proc = run_job_subprocess(["--input", pattern, "--output", output, "--teacher", tiny_teacher, *FAST_FLAGS],
                              env={**RAY_ENV, **s3_env.env_vars()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    fsspec.AbstractFileSystem.clear_instance_cache()
    check_output(output, pattern)
    again = run_job_subprocess(["--input", pattern, "--output", output, "--teacher", tiny_teacher, "--runner", "inprocess", *FAST_FLAGS],
                               env=s3_env.env_vars())
    assert again.returncode == 0 and "0 to label" in again.stderr, again.stderr[-2000:]


def test_ray_start_head_and_job_submit_with_token_authentication(tmp_path, tiny_teacher, generated_shards):
    """The README's cluster steps as a user runs them on Ray 2.60, authentication on.

    The cluster's HOME is a folder of its own (`tests.ray_cluster`): the token Ray keeps at
    ~/.ray/auth_token is the test's. A submission without RAY_AUTH_MODE=token is refused, the same
    one with it succeeds: authentication is really on, and the README's steps pass it.
    """
    cluster = LocalRayCluster(tmp_path / "cluster")
    try:
        cluster.start_head(cpus=2)
        out = tmp_path / "out"
        pattern = str(generated_shards / "{00000..00001}.tar")
        submit = ["job", "submit", f"--address={cluster.dashboard}", "--working-dir", str(ROOT), "--",
                  "python", "jobs/label_cc12m.py", "--input", pattern, "--output", str(out), "--teacher", tiny_teacher,
                  "--no-progress", *FAST_FLAGS]
        refused = cluster.ray(*submit, timeout=120)
        assert refused.returncode != 0 and "Token authentication is enabled" in refused.stdout + refused.stderr, (
            "the cluster should refuse a client that sends no token:\n" + (refused.stdout + refused.stderr)[-3000:])
        assert not out.exists()
        accepted = cluster.ray(*submit, timeout=600, env=cluster.client_env)
        assert accepted.returncode == 0, (accepted.stdout + accepted.stderr)[-4000:]
        assert "succeeded" in accepted.stdout + accepted.stderr
        check_output(str(out), pattern)
    finally:
        cluster.stop()
