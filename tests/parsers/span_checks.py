"""Invariants every extracted phrase list must satisfy, shared by the parser tests."""

from __future__ import annotations

from typing import Sequence

from parsers import CaptionParse, Phrase


def assert_spans_exact(caption: str, phrases: Sequence[Phrase]) -> None:
    """Each phrase indexes the caption exactly, is non-empty and trimmed; phrases are in order."""
    previous_end = 0
    for phrase in phrases:
        assert 0 <= phrase.start < phrase.end <= len(caption), (caption, phrase)
        assert caption[phrase.start : phrase.end] == phrase.text, (caption, phrase)
        assert phrase.text == phrase.text.strip(), phrase
        assert phrase.start >= previous_end, ("overlapping or out of order", caption, phrases)
        previous_end = phrase.end


def assert_parse_exact(caption: str, parse: CaptionParse) -> None:
    """Phrases as above; every dropped phrase and referring expression indexes the caption
    exactly; each expression contains its head phrase; kept expressions never overlap (so none
    is contained in another)."""
    assert_spans_exact(caption, parse.phrases)
    for dropped in parse.dropped:
        assert 0 <= dropped.start < dropped.end <= len(caption), (caption, dropped)
        assert caption[dropped.start : dropped.end] == dropped.text, (caption, dropped)
    previous_end = 0
    for expression in parse.ref_exps:
        head = parse.phrases[expression.phrase]
        assert caption[expression.start : expression.end] == expression.text, (caption, expression)
        assert expression.start <= head.start and head.end <= expression.end, (caption, expression, head)
        assert expression.start >= previous_end, ("overlapping or out of order", caption, parse.ref_exps)
        previous_end = expression.end
    if parse.truncated_at is not None:
        assert parse.dropped[-1].reason == "beyond_parse_cap", parse.dropped[-1]
        assert (parse.dropped[-1].start, parse.dropped[-1].end) == (parse.truncated_at, len(caption))
