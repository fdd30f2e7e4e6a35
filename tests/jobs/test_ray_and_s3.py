"""The same flow through Ray (local instance and `ray job submit`) and on s3:// (moto server)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import fsspec
import pytest

from tests.project import FAST_FLAGS, ROOT
from tests.jobs.running import copy_inputs, run_job_subprocess
from tests.jobs.output_checks import check_output

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(ray_bin: str, *args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([ray_bin, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_ray_start_head_and_job_submit_with_token_authentication(tmp_path, tiny_teacher, generated_shards):
    """The README's cluster steps as a user runs them on Ray 2.60, authentication on.

    HOME is a folder of the test's own, so the token Ray keeps at ~/.ray/auth_token is the test's
    and the user's own token is neither read nor replaced. RAY_AUTH_MODE is left unset for the
    head, as users leave it: Ray turns token authentication on because the token exists.
    """
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(RAY_ENV, HOME=str(home))
    generated = _ray(ray_bin, "get-auth-token", "--generate", env=env)
    assert generated.returncode == 0 and (home / ".ray" / "auth_token").is_file(), generated.stderr[-2000:]
    port, dash = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # AF_UNIX socket paths must stay short
    start = _ray(ray_bin, "start", "--head", f"--port={port}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
                 "--num-cpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats", env=env)
    assert start.returncode == 0, start.stderr[-3000:]
    try:
        out = tmp_path / "out"
        pattern = str(generated_shards / "{00000..00001}.tar")
        submit = ["job", "submit", f"--address=http://127.0.0.1:{dash}", "--working-dir", str(ROOT), "--",
                  "python", "jobs/label_cc12m.py", "--input", pattern, "--output", str(out), "--teacher", tiny_teacher,
                  "--no-progress", *FAST_FLAGS]
        refused = _ray(ray_bin, *submit, env=env, timeout=120)
        assert refused.returncode != 0 and "Token authentication is enabled" in refused.stdout + refused.stderr, (
            "the cluster should refuse a client that sends no token:\n" + (refused.stdout + refused.stderr)[-3000:])
        assert not out.exists()
        accepted = _ray(ray_bin, *submit, env={**env, "RAY_AUTH_MODE": "token"}, timeout=600)
        assert accepted.returncode == 0, (accepted.stdout + accepted.stderr)[-4000:]
        assert "succeeded" in accepted.stdout + accepted.stderr
        check_output(str(out), pattern)
    finally:
        _ray(ray_bin, "stop", "--force", env=env, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)
