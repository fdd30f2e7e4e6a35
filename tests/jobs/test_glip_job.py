"""The labelling job end to end with the native GLIP backend (the scaled-down golden GLIP-T,
converted to a checkpoint directory): the output passes the same checks as with Grounding DINO."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jobs.label_cc12m import main
from tests.jobs.output_checks import check_output
from tests.project import ROOT, SHARED

GOLDEN = SHARED / "glip_golden"


@pytest.fixture(scope="module")
def glip_dir(tmp_path_factory):
    if not GOLDEN.exists():
        pytest.skip(f"needs the GLIP golden data at {GOLDEN} (../shared/data is absent)")
    out = tmp_path_factory.mktemp("glip") / "glip-golden"
    proc = subprocess.run([sys.executable, "-m", "teacher.glip.convert", "--golden", str(GOLDEN), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_job_with_glip_teacher(tmp_path, glip_dir, generated_shards):
    pattern = str(generated_shards / "*.tar")
    out = tmp_path / "out"
    assert main(["--input", pattern, "--output", str(out), "--teacher", str(glip_dir), "--runner", "inprocess",
                 "--no-progress", "--box-threshold", "0.0", "--batch-size", "4", "--min-size", "320", "--max-size", "512"]) == 0
    totals = check_output(str(out), pattern)
    assert totals["ok"] > 0 and totals["boxes"] > 0
    manifest = json.loads((out / "_manifests" / "00000.json").read_text())
    assert manifest["teacher_id"] == str(glip_dir)
    from pipeline.tools.verify import main as verify

    assert verify([str(out), "--input", pattern]) == 0
