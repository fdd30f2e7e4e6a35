"""Trim a span of the parsed text to the words it names.

Noun phrases and referring expressions are both cut from spaCy's tokens, which can start or end
on quotes, stray punctuation or half a bracket pair; both are trimmed here, in the parsed copy,
so that a trim never cuts into an HTML entity of the caption.
"""

from __future__ import annotations

_OPENERS = "([{"
_CLOSERS = ")]}"
# Stripped from the ends of a span (in the parsed copy, where entities are already decoded).
_EDGE_CHARS = "\"'`“”‘’«»,;:!?*|/\\~_-–—•·"


def _is_plural_possessive(text: str, start: int, end: int) -> bool:
    return text[end - 1] in "'’" and end - 2 >= start and text[end - 2] in "sS"


def strip_edges(text: str, start: int, end: int) -> tuple[int, int]:
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
