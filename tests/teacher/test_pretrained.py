"""teacher.pretrained.load_pretrained: one loader for every backend's Hugging Face checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import AutoModelForZeroShotObjectDetection, AutoTokenizer, BertTokenizerFast

from teacher.checkpoints import CheckpointError, local_revision
from teacher.pretrained import load_pretrained


def test_loads_the_model_and_its_parts_in_eval_mode_with_the_recorded_revision(tiny_teacher: str) -> None:
    loaded = load_pretrained(tiny_teacher, "teacher", AutoModelForZeroShotObjectDetection,
                             {"tokenizer": AutoTokenizer}, device="cpu")
    assert isinstance(loaded.parts["tokenizer"], BertTokenizerFast)
    assert not loaded.model.training and loaded.model.device.type == "cpu"
    assert loaded.checkpoint.is_dir and loaded.checkpoint.path == tiny_teacher
    assert loaded.revision == local_revision(tiny_teacher)
    pinned = load_pretrained(tiny_teacher, "teacher", AutoModelForZeroShotObjectDetection, {}, device="cpu",
                             revision="abc123")
    assert pinned.revision == "abc123" and pinned.parts == {}


def test_an_unusable_checkpoint_is_one_sentence_with_the_fix(tiny_teacher: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_teacher, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"cannot load OWL checkpoint .*broken \(.*\); do this"):
        load_pretrained(str(broken), "OWL", AutoModelForZeroShotObjectDetection, {"tokenizer": AutoTokenizer},
                        device="cpu", fix="do this")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(str(tmp_path / "missing"), "teacher", AutoModelForZeroShotObjectDetection, {}, device="cpu")
