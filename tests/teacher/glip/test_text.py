"""Prompts and positive maps from character spans (hand-made cases, golden vocabulary)."""

from __future__ import annotations

import pytest

from teacher.glip.text import build_prompts, encode_prompts, load_tokenizer, positive_map


@pytest.fixture(scope="module")
def tok(golden_dir):
    return load_tokenizer(golden_dir)


def test_positive_map_from_golden_offsets(golden_meta) -> None:
    spans = [(p["start"], p["end"]) for p in golden_meta["phrases"]]
    pm = positive_map([tuple(o) for o in golden_meta["offset_mapping"]], spans, 256)
    assert {str(i + 1): row.nonzero().view(-1).tolist() for i, row in enumerate(pm)} == golden_meta["positive_map"]


def test_partial_word_span_takes_overlapping_tokens() -> None:
    offsets = [(0, 0), (0, 3), (3, 6), (7, 10), (0, 0)]
    assert positive_map(offsets, [(4, 6)], 5)[0].tolist() == [0, 0, 1, 0, 0]


def test_phrases_mode_joins_phrases(tok) -> None:
    caption = "a man near a red car"
    (prompt,) = build_prompts(tok, caption, [(11, 20), (0, 5)], "phrases", 256)
    assert prompt.text == "a man. a red car."
    assert [prompt.text[s:e] for s, e in prompt.spans] == ["a man", "a red car"]
    assert prompt.phrase_ids == [1, 0]


def test_long_caption_is_split_and_spans_map_back(tok) -> None:
    caption = " and ".join(["a red car"] * 40)
    spans = [(i * 14, i * 14 + 9) for i in range(40)]
    prompts = build_prompts(tok, caption, spans, "caption", 32)
    assert len(prompts) > 1
    assert sorted(i for p in prompts for i in p.phrase_ids) == list(range(40))
    for p in prompts:
        assert [p.text[s:e] for s, e in p.spans] == [caption[a:b] for a, b in (spans[i] for i in p.phrase_ids)]
        ids, mask, maps = encode_prompts(tok, [p], 32)
        assert int(mask.sum()) <= 32 and all(int(m.sum()) == 3 for m in maps[0])


def test_no_spans_no_prompts(tok) -> None:
    assert build_prompts(tok, "anything", [], "caption", 256) == []
