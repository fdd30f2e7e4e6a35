"""Full-size GLIP-T / GLIP-L built on the meta device have the official state-dict entries."""

from __future__ import annotations

import pytest
import torch

from teacher.glip.config import glip_l_config, glip_t_config, golden_config
from teacher.glip.model import GlipModel
from tests.teacher.glip.conftest import read_keys_tsv

pytestmark = pytest.mark.needs_shared_data


def _entries(model: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("make_cfg, tsv", [(glip_t_config, "keys_glip_t.tsv"), (glip_l_config, "keys_glip_l.tsv")])
def test_full_size_tree_matches_official_keys(golden_dir, make_cfg, tsv) -> None:
    with torch.device("meta"):
        model = GlipModel(make_cfg())
    expected = read_keys_tsv(golden_dir / tsv)
    got = _entries(model)
    assert sorted(set(got) - set(expected)) == []
    assert sorted(set(expected) - set(got)) == []
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
    assert all(t.is_meta for t in model.state_dict().values())


def test_scaled_down_tree_matches_golden_keys(golden_dir, golden_meta) -> None:
    with torch.device("meta"):
        model = GlipModel(golden_config(golden_meta))
    assert _entries(model) == read_keys_tsv(golden_dir / "keys_tiny.tsv")


def test_element_counts_match_readme(golden_dir) -> None:
    """The README states 231.8M (GLIP-T) and 430.9M (GLIP-L) elements."""
    for make_cfg, millions in ((glip_t_config, 231.8), (glip_l_config, 430.9)):
        with torch.device("meta"):
            model = GlipModel(make_cfg())
        total = sum(v.numel() for v in model.state_dict().values())
        assert round(total / 1e6, 1) == millions
