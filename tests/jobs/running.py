"""Running the job as users do, in a subprocess, for the end-to-end job tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.project import ROOT


def run_job_subprocess(args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "label_cc12m.py"), "--no-progress", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def copy_inputs(dst: Path, *sources: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for src in sources:
        if src.is_dir():
            for f in src.glob("*.tar"):
                shutil.copy(f, dst / f.name)
        else:
            shutil.copy(src, dst / src.name)
    return dst
