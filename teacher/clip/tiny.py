"""`python -m teacher.clip.tiny DIR`: write a tiny randomly initialised CLIP checkpoint.

Like `teacher.grounding_dino.tiny` for the grounding teacher: a real `transformers` checkpoint
(safetensors weights, config, tokenizer, image processor config), built offline, so the re-scoring tests load
it through exactly the code path of `openai/clip-vit-base-patch32`.

The tokenizer is CLIP's own kind, a byte-level BPE (`CLIPTokenizer`: vocab + merges), not a BERT
WordPiece: CLIPModel would accept any ids, but the real checkpoints' lower-casing, splitting and
`</w>` word ends would then go untested, and the text tower pools at the first end-of-text id,
which CLIP's tokenizer puts after the truncated text. The vocabulary is the 256 byte symbols,
the same with `</w>`, merges that spell the caption words of `teacher.tiny_checkpoints`, and the
two special tokens; any text tokenises without unknown tokens (unseen words fall back to bytes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from teacher.tiny_checkpoints import COMMON_WORDS, checkpoint_cli

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TEXT_LEN = 77  # CLIP's context length
TINY_IMAGE = 32
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary and merges that spell each word left to right (`d o` -> `do`,
    `do g</w>` -> `dog</w>`); the specials take the last ids, as in CLIP."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(words):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        left = parts[0]
        for right in parts[1:]:
            if (left, right) not in merges:
                merges.append((left, right))
            left += right
            vocab.setdefault(left, len(vocab))
    for special in (BOS, EOS):
        vocab[special] = len(vocab)
    return vocab, merges


def tiny_config(vocab: dict[str, int]):
    """Two layers and width 32 in each tower, 8-pixel patches, 16-d joint space."""
    from transformers import CLIPConfig

    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=TEXT_LEN)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=TINY_IMAGE, patch_size=8)
    return CLIPConfig(text_config=with_token_ids(text, vocab), vision_config=vision, projection_dim=16)


def with_token_ids(text_config: dict, vocab: dict[str, int]) -> dict:
    """The text config with this vocabulary's special ids: the text tower pools at `eos_token_id`,
    and padding is end-of-text as in CLIP."""
    return dict(text_config, bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS])


def share_a_direction(model, seed: int) -> None:
    """Give both towers' embeddings a common component, so that a random model's image-text
    cosines fall inside (0, 1) rather than below 0 (clamped to 0) about half the time: the tests
    can then tell scores apart. The final layer norms get a constant bias, which the projections
    map onto one shared direction; the normalised (zero-mean) part of each feature is untouched."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    dim = model.config.projection_dim
    shared = torch.nn.functional.normalize(torch.randn(dim, generator=gen), dim=0) * 2 * dim**0.5
    with torch.no_grad():
        for norm, proj in ((model.vision_model.post_layernorm, model.visual_projection),
                           (model.text_model.final_layer_norm, model.text_projection)):
            norm.bias.fill_(1.0)
            proj.weight += torch.outer(shared, torch.ones(proj.in_features)) / proj.in_features


def write_random_clip(out_dir: str | Path, config, *, image_size: int, seed: int = 0,
                      vocab: dict[str, int] | None = None, merges: list[tuple[str, str]] | None = None) -> Path:
    """Write a randomly initialised CLIPModel of `config` with the tiny tokenizer and a CLIP image
    processor config at `image_size` to `out_dir`; `bench/rescore_speed.py` uses it at full size."""
    import torch
    from transformers import CLIPModel, CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if vocab is None or merges is None:
        vocab, merges = build_bpe(COMMON_WORDS)
    CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TEXT_LEN).save_pretrained(out)
    # As the hub's CLIP checkpoints write it: the loader picks the backend (PIL or torchvision).
    processor = {
        "image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
        "do_resize": True, "size": {"shortest_edge": image_size}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD), "do_convert_rgb": True,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    share_a_direction(model, seed)
    model.save_pretrained(out, safe_serialization=True)
    return out


def write_tiny_clip(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny CLIP checkpoint (32x32 images) to `out_dir` and return it; the same seed
    gives the same weights."""
    vocab, merges = build_bpe(COMMON_WORDS)
    return write_random_clip(out_dir, tiny_config(vocab), image_size=TINY_IMAGE, seed=seed, vocab=vocab, merges=merges)


def main(argv: list[str] | None = None) -> int:
    return checkpoint_cli(argv, "python -m teacher.clip.tiny", __doc__.splitlines()[0], write_tiny_clip, "tiny CLIP")


if __name__ == "__main__":
    sys.exit(main())
