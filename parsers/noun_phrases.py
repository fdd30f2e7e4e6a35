"""Noun phrases of captions, as exact character spans of the caption as read.

`NounPhraseExtractor` loads spaCy once and parses captions in batches with `nlp.pipe`. Each
caption is cleaned for the parser (`source_text`), the parse is turned into phrase spans
(`chunk_rules`), and every span is mapped back to the original caption, so
`caption[p.start:p.end] == p.text` holds for every phrase, whatever the caption contains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from spacy.tokens import Doc

from parsers.chunk_rules import phrase_spans
from parsers.source_text import SourceText, prepare
from parsers.spacy_model import load_spacy_model, resolve_model_name

DEFAULT_MAX_CHARS = 2000

_OPENERS = "([{"
_CLOSERS = ")]}"
# Stripped from the ends of a phrase (in the parsed copy, where entities are already decoded).
_EDGE_CHARS = "\"'`“”‘’«»,;:!?*|/\\~_-–—•·"


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: `caption[start:end] == text` (Python str offsets)."""

    text: str
    start: int
    end: int


def _is_plural_possessive(text: str, start: int, end: int) -> bool:
    return text[end - 1] in "'’" and end - 2 >= start and text[end - 2] in "sS"


def _strip_edges(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink [start, end) past whitespace, quotes, stray punctuation and unbalanced brackets.

    A trailing apostrophe after "s" is kept: it is a plural possessive ("the players'").
    """
    while start < end:
        first, last = text[start], text[end - 1]
        if first.isspace() or first in _EDGE_CHARS:
            start += 1
        elif last.isspace() or (last in _EDGE_CHARS and not _is_plural_possessive(text, start, end)):
            end -= 1
        elif first in _OPENERS and _CLOSERS[_OPENERS.index(first)] not in text[start:end]:
            start += 1
        elif last in _CLOSERS and _OPENERS[_CLOSERS.index(last)] not in text[start:end]:
            end -= 1
        else:
            break
    return start, end


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def phrases_from_doc(caption: str, source: SourceText, doc: Doc) -> list[Phrase]:
    """Phrases of one parsed caption, in caption order, without duplicates.

    Edges are trimmed in the parsed copy (quotes, stray punctuation, unbalanced brackets), so
    a trim never cuts into an HTML entity; phrases whose parsed text has no letter (numbers,
    symbols, "&copy;") are dropped.

    Duplicates: a phrase whose parsed text repeats an earlier one's (ignoring case and spacing)
    is dropped and the first occurrence's span kept. Keyword-list alt-text repeats the same
    words many times ("Dumbbell, barbell ... Dumbbell, barbell, weights"). The teacher keeps up
    to K boxes per phrase, so "a dog ... a dog" still gets both dogs' boxes, on the first
    phrase; two phrases of one text would instead split the same boxes between two indices
    (identically so in the detection-prompt mode) and escape per-phrase NMS. On Flickr30k, where
    a repeated text is usually a second entity, this costs 0.3 points of exact-span recall.
    """
    phrases: list[Phrase] = []
    seen: set[str] = set()
    for span in phrase_spans(doc):
        start, end = _strip_edges(source.text, span.start_char, span.end_char)
        parsed_text = source.text[start:end]
        key = _normalised(parsed_text)
        if not any(ch.isalpha() for ch in parsed_text) or key in seen:
            continue
        seen.add(key)
        start, end = source.to_caption(start, end)
        phrases.append(Phrase(caption[start:end], start, end))
    return phrases


class NounPhraseExtractor:
    """Extract noun phrases from captions with a spaCy pipeline loaded once.

    `max_chars` bounds the parse cost of huge captions: only the first `max_chars` characters
    (cut at a space) are parsed; spans still index the full caption.
    """

    def __init__(
        self,
        model: str | None = None,
        batch_size: int = 256,
        n_process: int = 1,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        if batch_size < 1 or n_process < 1 or max_chars < 1:
            raise ValueError("batch_size, n_process and max_chars must be positive")
        self.model_name: str = resolve_model_name(model)
        self.nlp = load_spacy_model(self.model_name)
        self.batch_size = batch_size
        self.n_process = n_process
        self.max_chars = max_chars

    def iter_extract(self, captions: Sequence[str]) -> Iterator[list[Phrase]]:
        """Lazily yield each caption's phrases, in order. `None` counts as an empty caption."""
        captions = [caption or "" for caption in captions]
        sources = [prepare(caption, self.max_chars) for caption in captions]
        docs = self.nlp.pipe(
            (source.text for source in sources), batch_size=self.batch_size, n_process=self.n_process
        )
        for caption, source, doc in zip(captions, sources, docs):
            yield phrases_from_doc(caption, source, doc)

    def extract(self, captions: Sequence[str]) -> list[list[Phrase]]:
        """Phrases for each caption, in input order (one list per caption, maybe empty)."""
        return list(self.iter_extract(captions))
