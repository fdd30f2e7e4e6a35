"""Prompts and positive maps: the caption (or the joined phrases) tokenised with BERT's
WordPiece, and each phrase's character span mapped to the tokens it covers
(`teacher.grounding.positive_map`, the rule every backend shares)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import torch
from transformers import BertTokenizerFast

from teacher.grounding import positive_map


def load_tokenizer(directory: str | Path) -> BertTokenizerFast:
    """bert-base-uncased style tokenizer from a local `vocab.txt`; never downloads."""
    vocab = Path(directory) / "vocab.txt"
    if not vocab.is_file():
        raise FileNotFoundError(f"no vocab.txt in {directory}: the GLIP tokenizer is built from it")
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    key = "vocab" if "vocab" in params else "vocab_file"  # transformers 5 renamed the argument
    tok = BertTokenizerFast(**{key: str(vocab)}, do_lower_case=True)
    if tok.vocab_size < 5 or tok.convert_tokens_to_ids("[CLS]") == tok.unk_token_id:
        raise ValueError(f"{vocab} did not load as a WordPiece vocabulary")
    return tok


@dataclasses.dataclass
class Prompt:
    text: str
    phrase_ids: list[int]  # index into the request's spans
    spans: list[tuple[int, int]]  # character spans into `text`, one per phrase_ids entry


def _token_count(tokenizer: BertTokenizerFast, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True)["input_ids"])


def build_prompts(tokenizer: BertTokenizerFast, caption: str, spans: list[tuple[int, int]],
                  mode: str, max_len: int) -> list[Prompt]:
    """One prompt when it fits the text encoder; otherwise several, each a contiguous group
    of phrases (a slice of the caption in "caption" mode), spans re-based to the prompt."""
    if not spans:
        return []
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    if mode == "phrases":
        def make(group: list[int]) -> Prompt:
            text, out = "", []
            for i in group:
                s, e = spans[i]
                out.append((len(text), len(text) + e - s))
                text += caption[s:e] + ". "
            return Prompt(text.strip(), list(group), out)
    elif mode == "caption":
        def make(group: list[int]) -> Prompt:
            if len(group) == len(spans):
                return Prompt(caption, list(group), [spans[i] for i in group])
            lo = min(spans[i][0] for i in group)
            hi = max(spans[i][1] for i in group)
            return Prompt(caption[lo:hi], list(group), [(spans[i][0] - lo, spans[i][1] - lo) for i in group])
    else:
        raise ValueError(f"unknown prompt mode {mode!r}")
    whole = make(order)
    if _token_count(tokenizer, whole.text) <= max_len:
        return [whole]
    prompts, group = [], []
    for i in order:
        if group and _token_count(tokenizer, make(group + [i]).text) > max_len:
            prompts.append(make(group))
            group = []
        group.append(i)
    prompts.append(make(group))
    return prompts


def encode_prompts(tokenizer: BertTokenizerFast, prompts: list[Prompt], max_len: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Token ids and masks padded to `max_len` (as the official model), and positive maps."""
    enc = tokenizer([p.text for p in prompts], max_length=max_len, padding="max_length",
                    truncation=True, return_offsets_mapping=True, return_tensors="pt")
    maps = [positive_map([tuple(o) for o in enc["offset_mapping"][k].tolist()], p.spans, max_len)
            for k, p in enumerate(prompts)]
    return enc["input_ids"], enc["attention_mask"], maps
