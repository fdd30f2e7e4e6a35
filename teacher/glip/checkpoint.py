"""Loading official GLIP `.pth` checkpoints and converted safetensors directories.

Official checkpoints are read with `torch.load(weights_only=True)` (no arbitrary
unpickling), the state dict is `["model"]`, the DistributedDataParallel `module.` prefix is
stripped, the keys listed in `UNUSED_KEY_PATTERNS` are dropped, and the rest must match the
module tree exactly (`strict=True`); anything else fails with the leftovers grouped by prefix.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file

from teacher.glip.config import GlipConfig
from teacher.glip.model import GlipModel
from teacher.spec import has_glip_config

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

# Keys an official checkpoint may hold that inference does not use. Each is dropped on purpose:
UNUSED_KEY_PATTERNS: dict[str, str] = {
    r"^language_backbone\.body\.model\.embeddings\.position_ids$":
        "BERT position ids: saved as a buffer by transformers < 4.31, rebuilt here",
    r"^language_backbone\.body\.model\.embeddings\.token_type_ids$":
        "BERT token type ids buffer, rebuilt here",
    r"^language_backbone\.body\.model\.pooler\.":
        "BERT pooler: GLIP uses the token features, never the pooled output",
    r"^rpn\.head\.mlm_head\.":
        "masked-language-model head (training loss only)",
}


class CheckpointMismatch(RuntimeError):
    """The checkpoint does not fit the chosen GLIP configuration."""


def _group(keys: list[str]) -> str:
    counts = Counter(re.sub(r"\.\d+(?=\.|$)", ".*", ".".join(k.split(".")[:5])) for k in keys)
    return "\n".join(f"    {prefix} ({n} keys)" for prefix, n in sorted(counts.items()))


def clean_official_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Strip `module.`, drop the documented unused keys; returns (state, dropped keys)."""
    out, dropped = {}, []
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if any(re.search(p, key) for p in UNUSED_KEY_PATTERNS):
            dropped.append(key)
            continue
        out[key] = value
    return out, dropped


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    raw = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or "model" not in raw:
        raise CheckpointMismatch(f"{path}: expected a dict with a 'model' state dict (an official GLIP .pth)")
    state, _ = clean_official_state_dict(raw["model"])
    return state


def _materialise_nonpersistent(model: GlipModel, device: torch.device | str) -> None:
    """Buffers that a state dict does not carry (BERT's position/token-type ids)."""
    emb = model.language_backbone.body.model.embeddings
    n = model.config.bert.get("max_position_embeddings", 512)
    for name, value in (("position_ids", torch.arange(n, device=device).expand(1, -1)),
                        ("token_type_ids", torch.zeros((1, n), dtype=torch.long, device=device))):
        if hasattr(emb, name):
            emb.register_buffer(name, value, persistent=False)


def build_model_from_state(cfg: GlipConfig, state: dict[str, torch.Tensor],
                           device: str | torch.device = "cpu") -> GlipModel:
    """Meta-device module tree + strict assignment of `state`; fails loudly on any mismatch."""
    with torch.device("meta"):
        model = GlipModel(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"checkpoint does not match GLIP config {cfg.variant!r}:"]
        if missing:
            parts.append(f"  missing ({len(missing)}):\n{_group(missing)}")
        if unexpected:
            parts.append(f"  unexpected ({len(unexpected)}):\n{_group(unexpected)}")
        if wrong:
            parts.append(f"  wrong shape ({len(wrong)}):\n" + "\n".join(
                f"    {k}: checkpoint {tuple(state[k].shape)} vs model {expected[k]}" for k in wrong[:20]))
        raise CheckpointMismatch("\n".join(parts))
    model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=True, assign=True)
    _materialise_nonpersistent(model, device)
    return model.eval()


def is_glip_checkpoint_dir(path: str | Path) -> bool:
    """True for a directory written by `teacher.glip.convert` (config.json model_type "glip")."""
    return Path(path).is_dir() and has_glip_config(str(path))


def load_converted_dir(path: str | Path, device: str | torch.device = "cpu") -> GlipModel:
    path = Path(path)
    cfg = GlipConfig.load(path / CONFIG_NAME)
    return build_model_from_state(cfg, load_file(str(path / WEIGHTS_NAME)), device)
