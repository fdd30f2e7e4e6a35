"""Invariants every extracted phrase list must satisfy, shared by the parser tests."""

from __future__ import annotations

from typing import Sequence

from parsers import Phrase


def assert_spans_exact(caption: str, phrases: Sequence[Phrase]) -> None:
    """Each phrase indexes the caption exactly, is non-empty and trimmed; phrases are in order."""
    previous_end = 0
    for phrase in phrases:
        assert 0 <= phrase.start < phrase.end <= len(caption), (caption, phrase)
        assert caption[phrase.start : phrase.end] == phrase.text, (caption, phrase)
        assert phrase.text == phrase.text.strip(), phrase
        assert phrase.start >= previous_end, ("overlapping or out of order", caption, phrases)
        previous_end = phrase.end
