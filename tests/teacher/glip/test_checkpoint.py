"""Official-style .pth loading (weights_only, module. prefix, documented drops, strict) and
the converter CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from teacher.glip.checkpoint import (
    CheckpointMismatch,
    build_model_from_state,
    is_glip_checkpoint_dir,
    load_converted_dir,
    read_official_checkpoint,
)
from teacher.glip.config import GlipConfig, golden_config
from tests.project import ROOT

pytestmark = pytest.mark.needs_shared_data

REPO = ROOT


@pytest.fixture(scope="module")
def golden_state(golden_dir) -> dict[str, torch.Tensor]:
    return load_file(str(golden_dir / "golden_weights.safetensors"))


def _official_pth(state: dict[str, torch.Tensor], path: Path, extra: dict | None = None) -> Path:
    model = {f"module.{k}": v for k, v in state.items()}
    model.update(extra or {})
    torch.save({"model": model, "iteration": 1000, "optimizer": {"state": {}}}, path)
    return path


def test_reads_official_layout_and_drops_documented_keys(golden_state, golden_meta, tmp_path) -> None:
    extra = {"module.language_backbone.body.model.embeddings.position_ids": torch.arange(512)[None],
             "module.language_backbone.body.model.pooler.dense.weight": torch.zeros(64, 64),
             "module.rpn.head.mlm_head.bias": torch.zeros(20)}
    state = read_official_checkpoint(_official_pth(golden_state, tmp_path / "m.pth", extra))
    assert set(state) == set(golden_state)
    model = build_model_from_state(golden_config(golden_meta), state)
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    assert torch.equal(model.rpn.head.bias0, golden_state["rpn.head.bias0"])


def test_unknown_and_missing_keys_fail_grouped_by_prefix(golden_state, golden_meta, tmp_path) -> None:
    state = dict(golden_state)
    for k in [k for k in state if k.startswith("rpn.head.dyhead_tower.3.b_attn")]:
        del state[k]
    state["rpn.head.token_logits.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch) as err:
        build_model_from_state(golden_config(golden_meta), state)
    msg = str(err.value)
    assert "missing (18)" in msg and "rpn.head.dyhead_tower.*.b_attn" in msg
    assert "unexpected (1)" in msg and "rpn.head.token_logits.weight" in msg


def test_wrong_variant_fails_loudly(golden_state) -> None:
    with pytest.raises(CheckpointMismatch, match="wrong shape"):
        build_model_from_state(GlipConfig(), golden_state)


def test_pickled_objects_are_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "cfg": GlipConfig()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        read_official_checkpoint(path)


def test_convert_cli_pth_and_load(golden_state, golden_dir, tmp_path) -> None:
    """The CLI on an official-layout .pth (scaled-down weights need the golden config, so the
    variant presets are exercised for refusal and the golden path for success)."""
    pth = _official_pth(golden_state, tmp_path / "glip_tiny.pth")
    cmd = [sys.executable, "-m", "teacher.glip.convert", str(pth), str(tmp_path / "out"),
           "--variant", "glip-t", "--vocab", str(golden_dir / "vocab.txt")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "wrong shape" in proc.stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()

    out = tmp_path / "golden_out"
    proc = subprocess.run([sys.executable, "-m", "teacher.glip.convert", "--golden", str(golden_dir), str(out)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["model_type"] == "glip"
    assert (out / "vocab.txt").is_file() and (out / "tokenizer_config.json").is_file()
    assert is_glip_checkpoint_dir(out) and not is_glip_checkpoint_dir(tmp_path)
    model = load_converted_dir(out)
    assert torch.equal(model.state_dict()["rpn.head.log_scale"], golden_state["rpn.head.log_scale"])
