"""`glip-tiny-teacher DIR` (`python -m teacher.grounding_dino.tiny DIR`): write a tiny randomly
initialised Grounding DINO checkpoint.

It is a real `transformers` checkpoint (safetensors weights, config, tokenizer, image processor
config) with a WordPiece vocabulary built offline, so tests and the demo load it through exactly
the code path of a real checkpoint such as `IDEA-Research/grounding-dino-tiny`.
"""

from __future__ import annotations

import string
import sys
from pathlib import Path

from teacher.tiny_checkpoints import COMMON_WORDS, checkpoint_cli

# Grounding DINO's modelling code hard-codes BERT's ids of [CLS], [SEP], "." and "?" to split the
# text attention; the vocabulary keeps them at those ids, as bert-base-uncased does.
BERT_FIXED_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}


def build_vocab() -> list[str]:
    """A WordPiece vocabulary with BERT's special-token layout, single characters, their `##`
    continuations and common caption words; unused slots are `[unusedN]` as in BERT."""
    size = max(BERT_FIXED_IDS.values()) + 1
    vocab: list[str | None] = [None] * size
    for token, idx in BERT_FIXED_IDS.items():
        vocab[idx] = token
    fillers = [c for c in string.ascii_lowercase + string.digits + string.punctuation if c not in BERT_FIXED_IDS]
    fillers += ["##" + c for c in string.ascii_lowercase + string.digits]
    fillers += [w for w in dict.fromkeys(COMMON_WORDS) if w not in fillers]
    free = [i for i, t in enumerate(vocab) if t is None and i > 103]
    for idx, token in zip(free, fillers):
        vocab[idx] = token
    return [t if t is not None else f"[unused{i}]" for i, t in enumerate(vocab)]


def tiny_config(vocab_size: int):
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7,
                          out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512)
    return GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        num_queries=50, num_feature_levels=4, encoder_n_points=2, decoder_n_points=2, max_text_len=256,
    )


def write_tiny_teacher(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny checkpoint to `out_dir` and return it."""
    import torch
    from transformers import BertTokenizerFast, GroundingDinoForObjectDetection

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab()
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True, model_max_length=256)
    tokenizer.save_pretrained(out)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(tiny_config(len(vocab)))
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    (out / "preprocessor_config.json").write_text(
        '{"image_processor_type": "GroundingDinoImageProcessor", "image_mean": [0.485, 0.456, 0.406],'
        ' "image_std": [0.229, 0.224, 0.225], "size": {"shortest_edge": 800, "longest_edge": 1333}}\n'
    )
    return out


def main(argv: list[str] | None = None) -> int:
    return checkpoint_cli(argv, "glip-tiny-teacher", "Write a tiny randomly initialised Grounding DINO checkpoint.",
                          write_tiny_teacher, "tiny Grounding DINO teacher")


if __name__ == "__main__":
    sys.exit(main())
