"""The README's first set-up command: the demo runs the job on local Ray and verifies it."""

import pytest

from tests.project import ROOT

pytestmark = pytest.mark.slow


def test_demo_runs_and_verifies(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run([sys.executable, "jobs/demo.py", str(tmp_path / "demo"), "--samples", "6"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "OK: 2 shards checked, 0 with violations" in proc.stdout + proc.stderr
    assert (tmp_path / "demo" / "out" / "_manifests" / "00001.json").exists()
