"""Write a GLIP checkpoint directory (model.safetensors, config.json, tokenizer files).

    python -m teacher.glip.convert SRC.pth OUT_DIR --variant glip-t|glip-l --vocab VOCAB.txt
    python -m teacher.glip.convert --golden ../shared/data/glip_golden OUT_DIR

The weights are checked by a strict load into the chosen configuration before writing.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from teacher.glip.checkpoint import CONFIG_NAME, WEIGHTS_NAME, build_model_from_state, read_official_checkpoint
from teacher.glip.config import GlipConfig, config_for_variant, golden_config
from teacher.glip.text import load_tokenizer


def write_checkpoint_dir(cfg: GlipConfig, state: dict[str, torch.Tensor], vocab: str | Path,
                         out_dir: str | Path) -> Path:
    build_model_from_state(cfg, state, "cpu")  # strict check before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / WEIGHTS_NAME),
              metadata={"format": "pt", "model_type": "glip", "variant": cfg.variant})
    cfg.save(out / CONFIG_NAME)
    shutil.copy(vocab, out / "vocab.txt")
    load_tokenizer(out).save_pretrained(str(out))
    return out


def convert_official(src: str | Path, out_dir: str | Path, variant: str, vocab: str | Path) -> Path:
    return write_checkpoint_dir(config_for_variant(variant), read_official_checkpoint(src), vocab, out_dir)


def convert_golden(golden_dir: str | Path, out_dir: str | Path) -> Path:
    """The scaled-down golden GLIP-T as a checkpoint directory (for tests and demos)."""
    golden_dir = Path(golden_dir)
    meta = json.loads((golden_dir / "golden_meta.json").read_text())
    state = load_file(str(golden_dir / "golden_weights.safetensors"))
    return write_checkpoint_dir(golden_config(meta), state, golden_dir / "vocab.txt", out_dir)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m teacher.glip.convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", nargs="?", help="official GLIP .pth")
    ap.add_argument("out_dir")
    ap.add_argument("--variant", choices=["glip-t", "glip-l"])
    ap.add_argument("--vocab", help="bert-base-uncased vocab.txt")
    ap.add_argument("--golden", help="shared/data/glip_golden directory (instead of SRC)")
    args = ap.parse_args(argv)
    if args.golden:
        out = convert_golden(args.golden, args.out_dir)
    else:
        if not (args.src and args.variant and args.vocab):
            ap.error("SRC, --variant and --vocab are required unless --golden is given")
        out = convert_official(args.src, args.out_dir, args.variant, args.vocab)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
