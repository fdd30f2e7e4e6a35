"""Fixtures over `../shared/data/glip_golden` (skipped with a reason when it is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.project import SHARED

GOLDEN = SHARED / "glip_golden"


def require_golden() -> Path:
    if not (GOLDEN / "golden_meta.json").is_file():
        pytest.skip(f"GLIP golden data not found at {GOLDEN} (needs ../shared/data/glip_golden)")
    return GOLDEN


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return require_golden()


@pytest.fixture(scope="session")
def golden_meta(golden_dir: Path) -> dict:
    return json.loads((golden_dir / "golden_meta.json").read_text())


@pytest.fixture(scope="session")
def golden_io(golden_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(golden_dir / "golden_io.safetensors"))


@pytest.fixture(scope="session")
def golden_pixels(golden_dir: Path, golden_meta: dict) -> np.ndarray:
    return np.asarray(Image.open(golden_dir / golden_meta["image_file"]).convert("RGB"))


@pytest.fixture(scope="session")
def golden_model(golden_dir: Path, golden_meta: dict):
    from safetensors.torch import load_file

    from teacher.glip.checkpoint import build_model_from_state
    from teacher.glip.config import golden_config

    state = load_file(str(golden_dir / "golden_weights.safetensors"))
    return build_model_from_state(golden_config(golden_meta), state, "cpu")


@pytest.fixture(scope="session")
def golden_checkpoint_dir(golden_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from teacher.glip.convert import convert_golden

    return convert_golden(golden_dir, tmp_path_factory.mktemp("glip_golden_ckpt"))


def read_keys_tsv(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    out = {}
    for line in path.read_text().splitlines():
        name, shape, dtype = line.split("\t")
        dims = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
        out[name] = (dims, dtype)
    return out
