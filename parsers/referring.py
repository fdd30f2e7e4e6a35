"""GRIT's referring expressions, built from the parse the noun phrases came from.

Kosmos-2 (arXiv 2306.14824, section 2, step 2) expands noun chunks to referring expressions:
"we expand a noun chunk into a referring expression by recursively traversing its children in
the dependency tree and concatenating children tokens with the noun chunk. We do not expand
noun chunks with conjuncts. [...] we only retain referring expressions or noun chunks that are
not contained by others", and "assign the bounding box of the noun chunk ('a dog') to the
corresponding generated referring expression ('a dog in a field of flowers')".

Here the noun chunks are the row's final phrases (`chunk_rules`, after every filter), so an
expression's `phrase` indexes the phrase list whose boxes it inherits:

- expansion: the tokens from the left edge to the right edge of the phrase's head token's
  subtree (its children, recursively), never less than the phrase itself. The paper is silent
  on the edges; a subtree can end on words that end no noun phrase, when the parser left them
  without their object ("a tray served with", "kale and") or on the sentence's full stop, so
  dangling conjunctions, prepositions without an object, determiners and punctuation other
  than brackets and quotes are cut from the ends, then the text is trimmed like a phrase
  (`span_edges`, which keeps balanced brackets and quotes);
- conjuncts: a phrase whose head is coordinated with another noun (spaCy's `conjuncts`, which
  both sides of "a dog and a cat" have) is its own expression, unexpanded;
- an expression equal to its phrase is kept like any other: GRIT keeps "noun chunks that are
  not contained by others";
- containment: expressions are taken longest first; one that overlaps an expression already
  taken is dropped. So an expression contained in a kept one goes (GRIT's rule), and of two
  that overlap without nesting (a non-projective parse, a coordination split) the longer, or
  the earlier when as long, is kept. GRIT's output marks each expression as a Markdown-style
  link "[text](boxes)", which cannot nest or overlap; keeping only disjoint expressions keeps
  that possible, and the longest is the most descriptive mention;
- only the kept phrases are expanded: a phrase dropped as a duplicate has its boxes merged
  into the first one of its text, so an expression of its own could not inherit just its boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from spacy.tokens import Span, Token

from parsers.source_text import SourceText
from parsers.span_edges import strip_edges


@dataclass(frozen=True)
class RefExp:
    """A referring expression: `caption[start:end] == text`; it inherits phrase `phrase`'s boxes."""

    text: str
    start: int
    end: int
    phrase: int


@dataclass(frozen=True)
class HeadPhrase:
    """A kept phrase as the expansion needs it: its tokens and its trimmed parsed-text range."""

    span: Span
    start: int
    end: int


def _is_dangling(token: Token, at_end: bool) -> bool:
    """Whether an expression may not start (or end) on this token (module docstring)."""
    if token.is_space or (token.is_punct and not (token.is_bracket or token.is_quote)):
        return True
    if token.pos_ in ("CCONJ", "SCONJ"):
        return True
    return at_end and (token.pos_ == "DET" or (token.pos_ == "ADP" and token.dep_ == "prep"))


def _expansion(text: str, head: HeadPhrase) -> tuple[int, int]:
    """The parsed-text range of the phrase's referring expression (module docstring)."""
    root, phrase = head.span.root, head.span
    if root.conjuncts:
        return head.start, head.end
    first, last = min(root.left_edge.i, phrase.start), max(root.right_edge.i + 1, phrase.end)
    doc = phrase.doc
    while first < phrase.start and _is_dangling(doc[first], at_end=False):
        first += 1
    while last > phrase.end and _is_dangling(doc[last - 1], at_end=True):
        last -= 1
    tokens = doc[first:last]
    start, end = strip_edges(text, tokens.start_char, tokens.end_char)
    # A trim that would cut into the phrase (a bracket it balances) stops at the phrase.
    return min(start, head.start), max(end, head.end)


def _disjoint_longest_first(candidates: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(start, end, phrase) candidates that overlap no longer (or as long and earlier) one."""
    kept: list[tuple[int, int, int]] = []
    for start, end, phrase in sorted(candidates, key=lambda c: (c[0] - c[1], c[0], c[2])):
        if all(end <= other_start or other_end <= start for other_start, other_end, _ in kept):
            kept.append((start, end, phrase))
    return sorted(kept)


def referring_expressions(caption: str, source: SourceText, heads: Sequence[HeadPhrase]) -> list[RefExp]:
    """The kept referring expressions of one caption, in caption order; `heads[i]` is phrase i."""
    candidates = [(*_expansion(source.text, head), index) for index, head in enumerate(heads)]
    expressions = []
    for start, end, phrase in _disjoint_longest_first(candidates):
        start, end = source.to_caption(start, end)
        expressions.append(RefExp(caption[start:end], start, end, phrase))
    return expressions
