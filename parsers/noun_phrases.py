"""Noun phrases of captions, as exact character spans of the caption as read.

`NounPhraseExtractor` loads spaCy once and parses captions in batches with `nlp.pipe`. Each
caption is cleaned for the parser (`source_text`), the parse is turned into phrase spans
(`chunk_rules`), and every span is mapped back to the original caption, so
`caption[p.start:p.end] == p.text` holds for every phrase, whatever the caption contains.

`analyse` gives more from the same parse: the candidates each rule dropped and why, GRIT's
referring expressions (`referring`), an optional abstract-noun rule (`abstract_nouns`) and
where the parsing cap cut the caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from typing import Callable, Iterator, Sequence

from spacy.tokens import Doc, Span, Token

from parsers.abstract_nouns import Lemmatize, is_abstract_phrase
from parsers.chunk_rules import NO_LETTERS, candidate_spans
from parsers.referring import HeadPhrase, RefExp, referring_expressions
from parsers.source_text import SourceText, prepare, truncate
from parsers.spacy_model import load_lemmatizer, load_spacy_model, resolve_model_name
from parsers.span_edges import strip_edges

DEFAULT_MAX_CHARS = 2000
# Reasons of `DroppedPhrase` besides those of `chunk_rules` (pronoun, relation_noun, no_letters).
DUPLICATE = "duplicate"
ABSTRACT_NOUN = "abstract_noun"
BEYOND_PARSE_CAP = "beyond_parse_cap"


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: `caption[start:end] == text` (Python str offsets)."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class DroppedPhrase:
    """A candidate a rule left out: `caption[start:end] == text`; `reason` names the rule."""

    text: str
    start: int
    end: int
    reason: str


@dataclass(frozen=True)
class CaptionParse:
    """All one parse of a caption gives. `ref_exps[i].phrase` indexes `phrases`; `truncated_at`
    is the caption offset where parsing stopped (None when the whole caption was parsed)."""

    phrases: list[Phrase]
    dropped: list[DroppedPhrase]
    ref_exps: list[RefExp]
    truncated_at: int | None


@dataclass(frozen=True)
class _Filtered:
    """The phrases a parse keeps (with their spans, for expansion) and the candidates it drops."""

    phrases: list[Phrase]
    heads: list[HeadPhrase]
    dropped: list[DroppedPhrase]


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def _dropped(caption: str, source: SourceText, span: Span, reason: str) -> DroppedPhrase:
    """The caption span of a dropped candidate: trimmed like a phrase unless nothing is left."""
    start, end = strip_edges(source.text, span.start_char, span.end_char)
    if start == end:
        start, end = span.start_char, span.end_char
    start, end = source.to_caption(start, end)
    return DroppedPhrase(caption[start:end], start, end, reason)


def _filter_phrases(
    caption: str, source: SourceText, doc: Doc, is_abstract: Callable[[Span], bool] | None
) -> _Filtered:
    """Phrases of one parsed caption, in caption order, without duplicates; and what was dropped.

    Edges are trimmed in the parsed copy (quotes, stray punctuation, unbalanced brackets), so
    a trim never cuts into an HTML entity; phrases whose parsed text has no letter (numbers,
    symbols, "&copy;") are dropped, then (when `is_abstract` is given) abstract ones.

    Duplicates: a phrase whose parsed text repeats an earlier one's (ignoring case and spacing)
    is dropped and the first occurrence's span kept. Keyword-list alt-text repeats the same
    words many times ("Dumbbell, barbell ... Dumbbell, barbell, weights"). The teacher keeps up
    to K boxes per phrase, so "a dog ... a dog" still gets both dogs' boxes, on the first
    phrase; two phrases of one text would instead split the same boxes between two indices
    (identically so in the detection-prompt mode) and escape per-phrase NMS. On Flickr30k, where
    a repeated text is usually a second entity, this costs 0.3 points of exact-span recall.
    """
    spans, rejected = candidate_spans(doc)
    found = _Filtered([], [], [_dropped(caption, source, span, reason) for span, reason in rejected])
    seen: set[str] = set()
    for span in spans:
        start, end = strip_edges(source.text, span.start_char, span.end_char)
        parsed_text = source.text[start:end]
        key = _normalised(parsed_text)
        if not any(ch.isalpha() for ch in parsed_text):
            reason: str | None = NO_LETTERS
        elif is_abstract is not None and is_abstract(span):
            reason = ABSTRACT_NOUN
        else:
            reason = DUPLICATE if key in seen else None
        if reason is not None:
            found.dropped.append(_dropped(caption, source, span, reason))
            continue
        seen.add(key)
        caption_start, caption_end = source.to_caption(start, end)
        found.phrases.append(Phrase(caption[caption_start:caption_end], caption_start, caption_end))
        found.heads.append(HeadPhrase(span, start, end))
    found.dropped.sort(key=lambda dropped: (dropped.start, dropped.end))
    return found


def phrases_from_doc(caption: str, source: SourceText, doc: Doc) -> list[Phrase]:
    """Phrases of one parsed caption, in caption order, without duplicates (`_filter_phrases`)."""
    return _filter_phrases(caption, source, doc, None).phrases


def _lower_case_word(token: Token) -> str:
    return token.lower_


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

    def _parsed(self, captions: Sequence[str]) -> Iterator[tuple[str, SourceText, Doc]]:
        """Each caption (`None` as ""), its cleaned copy and the parse of that copy, in order."""
        captions = [caption or "" for caption in captions]
        sources = [prepare(caption, self.max_chars) for caption in captions]
        docs = self.nlp.pipe(
            (source.text for source in sources), batch_size=self.batch_size, n_process=self.n_process
        )
        return zip(captions, sources, docs)

    def iter_extract(self, captions: Sequence[str]) -> Iterator[list[Phrase]]:
        """Lazily yield each caption's phrases, in order. `None` counts as an empty caption."""
        for caption, source, doc in self._parsed(captions):
            yield phrases_from_doc(caption, source, doc)

    def extract(self, captions: Sequence[str]) -> list[list[Phrase]]:
        """Phrases for each caption, in input order (one list per caption, maybe empty)."""
        return list(self.iter_extract(captions))

    @cached_property
    def _lemma(self) -> Lemmatize:
        """Lemmas for the abstract-noun rule, loaded on its first use only.

        A pipeline without a lemmatizer (a folder saved from `load_spacy_model`, which leaves
        it out) falls back to the lower-case word: plural heads ("moments") then escape the rule.
        """
        return load_lemmatizer(self.model_name, self.nlp.vocab) or _lower_case_word

    def analyse(
        self,
        captions: Sequence[str],
        *,
        ref_exps: bool = False,
        abstract_nouns: frozenset[str] | None = None,
    ) -> list[CaptionParse]:
        """Phrases, dropped candidates, referring expressions and the parse cap, per caption.

        With `abstract_nouns=None` the phrases are exactly `extract`'s; with a set (for example
        `DEFAULT_ABSTRACT_NOUNS`) phrases headed by those nouns are dropped as "abstract_noun".
        Referring expressions are built only when `ref_exps` is true (else `ref_exps == []`).
        A caption longer than `max_chars` gets `truncated_at` and a "beyond_parse_cap" dropped
        phrase for its unparsed tail, so the cap is never silent.
        """
        is_abstract = None
        if abstract_nouns is not None:
            is_abstract = partial(is_abstract_phrase, abstract_nouns=abstract_nouns, lemma=self._lemma)
        parses = []
        for caption, source, doc in self._parsed(captions):
            found = _filter_phrases(caption, source, doc, is_abstract)
            expressions = referring_expressions(caption, source, found.heads) if ref_exps else []
            parsed_chars = len(truncate(caption, self.max_chars))
            truncated_at = parsed_chars if parsed_chars < len(caption) else None
            if truncated_at is not None:
                tail = DroppedPhrase(caption[truncated_at:], truncated_at, len(caption), BEYOND_PARSE_CAP)
                found.dropped.append(tail)
            parses.append(CaptionParse(found.phrases, found.dropped, expressions, truncated_at))
        return parses
