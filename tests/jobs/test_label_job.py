"""The labelling job end to end (in-process runner: fast), then resume and config changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from jobs.label_cc12m import main
from tests.jobs.output_checks import check_output
from tests.jobs.running import copy_inputs
from tests.project import FAST_FLAGS


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in root.rglob("*") if p.is_file() and "_runs" not in p.parts
    }


def test_job_on_real_and_generated_shards_then_rerun_and_config_change(tmp_path, tiny_teacher, generated_shards, cc12m_shard, capsys):
    inputs = copy_inputs(tmp_path / "in", generated_shards, cc12m_shard)
    pattern = str(inputs / "*.tar")
    out = tmp_path / "out"
    args = ["--input", pattern, "--output", str(out), "--teacher", tiny_teacher, "--runner", "inprocess",
            "--no-progress", "--box-threshold", "0.05", *FAST_FLAGS]
    assert main(args) == 0
    totals = check_output(str(out), pattern)
    assert totals["rows"] == 12 * 2 + 32
    assert totals["ok"] > 0 and totals["boxes"] > 0
    runs = list((out / "_runs").glob("*.json"))
    assert len(runs) == 1
    record = json.loads(runs[0].read_text())
    assert record["shards_done"] == 3 and record["samples"] == totals["rows"]
    assert record["config"]["box_threshold"] == 0.05

    before = _snapshot(out)
    capsys.readouterr()
    assert main(args) == 0
    assert "0 to label" in capsys.readouterr().err
    assert _snapshot(out) == before, "a rerun must not touch finished shards"

    changed = [a if a != "0.05" else "0.3" for a in args]
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "box_threshold: 0.05 -> 0.3" in err and "--overwrite" in err
    assert _snapshot(out) == before

    assert main(changed + ["--overwrite"]) == 0
    for manifest in (out / "_manifests").glob("*.json"):
        data = json.loads(manifest.read_text())
        assert data["settings"]["box_threshold"] == 0.3
    check_output(str(out), pattern)


def test_bad_flags_and_inputs_give_one_clear_sentence(tmp_path, tiny_teacher, capsys):
    assert main(["--input", str(tmp_path / "nothing-*.tar"), "--output", str(tmp_path / "o"), "--teacher", tiny_teacher]) == 2
    assert "matched no .tar shards" in capsys.readouterr().err
    assert main(["--input", "x", "--output", "y", "--teacher", "t", "--box-threshold", "2"]) == 2
    assert "--box-threshold 2.0 is outside [0, 1]" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("box_treshold: 0.2\n")
    assert main(["--config", str(cfg), "--input", "x", "--output", "y", "--teacher", "t"]) == 2
    assert "unknown setting 'box_treshold'" in (err := capsys.readouterr().err) and "did you mean 'box_threshold'" in err
    assert main(["--input", "x", "--output", "y", "--teacher", "t", "--precision", "fp16"]) == 2
    assert "--precision 'fp16' is not one of bf16, fp32" in capsys.readouterr().err


def test_precision_is_hashed_only_when_it_is_not_the_default():
    from pipeline.config import build_config, diff_settings

    flags = {"input": "x", "output": "y", "teacher": "t"}
    default, bf16, fp32 = (build_config(dict(flags, precision=p)) for p in (None, "bf16", "fp32"))
    assert "precision" not in default.hashed_settings()  # outputs made before the setting resume
    assert default.config_hash() == bf16.config_hash() != fp32.config_hash()
    assert fp32.hashed_settings()["precision"] == "fp32"
    assert diff_settings(default.hashed_settings(), fp32.hashed_settings()) == [
        "precision: 'bf16' (not recorded: the value before --precision existed) -> 'fp32'"]


def test_outputs_labelled_before_fast_decode_existed_resume_with_it_and_are_named_without():
    from pipeline.config import build_config, diff_settings

    flags = {"input": "x", "output": "y", "teacher": "t"}
    reference, fast = build_config(flags), build_config(dict(flags, fast_decode=True))
    assert "fast_decode" not in fast.hashed_settings()  # what every earlier output was labelled with
    assert reference.hashed_settings()["fast_decode"] is False
    assert diff_settings(fast.hashed_settings(), reference.hashed_settings()) == [
        "fast_decode: True (not recorded: the value before --fast-decode existed) -> False"]


def test_yaml_config_is_used_and_flags_override_it(tmp_path, tiny_teacher, generated_shards):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("box_threshold: 0.2\nmax_boxes: 3\nprompt_mode: phrases\nprecision: fp32\n")
    out = tmp_path / "out"
    pattern = str(generated_shards / "00000.tar")
    assert main(["--config", str(cfg), "--input", pattern, "--output", str(out), "--teacher", tiny_teacher,
                 "--runner", "inprocess", "--no-progress", "--max-boxes", "2", *FAST_FLAGS]) == 0
    manifest = json.loads((out / "_manifests" / "00000.json").read_text())
    assert manifest["settings"]["box_threshold"] == 0.2
    assert manifest["settings"]["max_boxes"] == 2
    assert manifest["settings"]["prompt_mode"] == "phrases"
    assert manifest["settings"]["precision"] == "fp32"
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "parquet" / "00000.parquet").to_pylist()
    assert all(len(r["boxes"]) <= 2 for r in rows)
    assert all(b["score"] >= 0.2 for r in rows for b in r["boxes"])
    check_output(str(out), pattern)


def test_user_errors_are_one_sentence_with_exit_code_2(tmp_path, generated_shards, capsys):
    pattern = str(generated_shards / "*.tar")
    cases = [
        (["--teacher", str(tmp_path / "missing")], "does not exist or is not a directory"),
        (["--teacher", str(tmp_path)], "has no config.json"),
        (["--teacher", "glip-t:" + str(tmp_path / "nope.pth")], "does not exist"),
    ]
    for extra, expected in cases:
        assert main(["--input", pattern, "--output", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    cfg = tmp_path / "typed.yaml"
    cfg.write_text("box_threshold: abc\n")
    assert main(["--config", str(cfg), "--input", pattern, "--output", str(tmp_path / "o"), "--teacher", "t"]) == 2
    assert "box_threshold in" in (err := capsys.readouterr().err) and "must be a number" in err
    assert main(["--input", pattern, "--output", str(tmp_path / "o"), "--teacher", "t", "--teacher-threads", "0"]) == 2
    assert "--teacher-threads 0 must be at least 1" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["--input", pattern, "--output", str(afile), "--teacher", "t"]) == 2
    assert "is a file" in capsys.readouterr().err
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        main(["--input", str(generated_shards / "00000.tar"), str(generated_shards / "00001.tar"), "--output", "o", "--teacher", "t"])
    assert exit_info.value.code == 2
    assert "quote the --input pattern" in capsys.readouterr().err


def test_tools_refuse_an_output_without_shards(tmp_path, capsys):
    from pipeline.tools.export import main as export_main
    from pipeline.tools.inspect_output import main as inspect_main

    assert inspect_main([str(tmp_path / "nothing")]) == 2
    assert "no committed shards" in capsys.readouterr().err
    assert export_main([str(tmp_path / "nothing"), "--format", "coco", "--out", str(tmp_path / "x.json")]) == 2
    assert "no committed shards" in capsys.readouterr().err


def test_device_cuda_without_a_gpu_names_the_flag(tmp_path, tiny_teacher, generated_shards, capsys):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    assert main(["--input", str(generated_shards / "00000.tar"), "--output", str(tmp_path / "o"), "--teacher", tiny_teacher,
                 "--runner", "inprocess", "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "--device cpu" in err and "Traceback" not in err, err
