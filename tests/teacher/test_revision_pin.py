"""`--teacher-revision` and `--rescorer-revision` pin the commit of a hub checkpoint that is loaded.

No hub is reachable here, so the test builds a Hugging Face cache by hand: one hub id with two
commits (different random weights) and `main` pointing at the second, then loads the id offline
with the first commit pinned, in a fresh process (the hub's cache location is read at import).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from teacher.clip.tiny import write_tiny_clip
from teacher.grounding_dino.tiny import write_tiny_teacher
from tests.project import ROOT

OLD, NEW = "1" * 40, "2" * 40

LOAD = """
import json, sys
from pipeline.config import build_config
from pipeline.runners.base import load_configured_teacher
cfg = build_config(dict(input="x", output="y", teacher="org/tiny", teacher_revision=sys.argv[1],
                        rescorer="org/clip", rescorer_revision=sys.argv[1], device="cpu"))
policy = load_configured_teacher(cfg)
first = lambda model: sum(float(p.double().abs().sum()) for p in model.parameters())
print(json.dumps({"teacher": first(policy.teacher.model), "teacher_revision": policy.teacher.revision,
                  "clip": first(policy.rescorer.model), "clip_revision": policy.rescorer.revision}))
"""


def _hub_repo(cache: Path, repo_id: str, snapshots: dict[str, Path]) -> None:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for commit, source in snapshots.items():
        shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(NEW)


@pytest.mark.slow
def test_a_pinned_revision_loads_that_commit_not_main(tmp_path) -> None:
    cache = tmp_path / "hub"
    teachers = {c: write_tiny_teacher(tmp_path / f"t{i}", seed=i) for i, c in enumerate((OLD, NEW))}
    clips = {c: write_tiny_clip(tmp_path / f"c{i}", seed=i) for i, c in enumerate((OLD, NEW))}
    _hub_repo(cache, "org/tiny", {c: Path(p) for c, p in teachers.items()})
    _hub_repo(cache, "org/clip", {c: Path(p) for c, p in clips.items()})
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    loaded = {}
    for commit in (OLD, NEW):
        done = subprocess.run([sys.executable, "-c", LOAD, commit], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        loaded[commit] = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded[OLD]["teacher_revision"] == OLD and loaded[OLD]["clip_revision"] == OLD
    assert loaded[OLD]["teacher"] != loaded[NEW]["teacher"]  # seed 0 and seed 1: another commit, other weights
    assert loaded[OLD]["clip"] != loaded[NEW]["clip"]
