"""Prompt building: caption mode, phrase mode, and splitting long captions into windows."""

import os
import tempfile

import pytest
from transformers import BertTokenizerFast

from teacher.grounding_dino.tiny import build_vocab
from teacher.prompts import build_prompts


@pytest.fixture(scope="module")
def tokenizer():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "vocab.txt")
        with open(path, "w") as fh:
            fh.write("\n".join(build_vocab()))
        yield BertTokenizerFast(vocab=path, do_lower_case=True)


def test_caption_mode_is_one_prompt_with_original_spans(tokenizer):
    caption = "a man with a dog"
    spans = [(0, 5), (11, 16)]
    (prompt,) = build_prompts(caption, spans, tokenizer, mode="caption", max_tokens=256)
    assert prompt.text == caption and list(prompt.spans) == spans and prompt.phrase_ids == (0, 1)


def test_phrase_mode_joins_phrases(tokenizer):
    caption = "a man with a red frisbee"
    spans = [(0, 5), (11, 24)]
    (prompt,) = build_prompts(caption, spans, tokenizer, mode="phrases", max_tokens=256)
    assert prompt.text == "a man. a red frisbee."
    assert [prompt.text[s:e] for s, e in prompt.spans] == ["a man", "a red frisbee"]


def test_long_caption_is_split_and_every_span_maps_back(tokenizer):
    words = ["a red car", "the old house", "a white dog", "two people"]
    parts, spans = [], []
    pos = 0
    for i in range(120):
        phrase = words[i % len(words)]
        parts.append(phrase)
        spans.append((pos, pos + len(phrase)))
        pos += len(phrase) + len(" near ")
    caption = " near ".join(parts)
    prompts = build_prompts(caption, spans, tokenizer, mode="caption", max_tokens=64)
    assert len(prompts) > 1
    seen = []
    for p in prompts:
        ids = tokenizer(p.text)["input_ids"]
        assert len(ids) <= 64
        offset = caption.index(p.text)
        for (s, e), pid in zip(p.spans, p.phrase_ids):
            assert p.text[s:e] == caption[spans[pid][0]:spans[pid][1]]
            assert caption[offset + s: offset + e] == p.text[s:e]
            seen.append(pid)
    assert sorted(seen) == list(range(len(spans)))


def test_no_spans_no_prompt(tokenizer):
    assert build_prompts("nothing here", [], tokenizer, mode="caption", max_tokens=256) == []


def test_unknown_mode_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match="prompt mode"):
        build_prompts("a dog", [(0, 5)], tokenizer, mode="boxes", max_tokens=256)
