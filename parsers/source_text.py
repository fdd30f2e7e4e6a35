"""Turn a raw web caption into the text spaCy parses, keeping a map back to the caption.

Web alt-text carries markup that hurts the parser: HTML entities (`&amp;`), stray tags (`<br>`,
or escaped, `&lt;i&gt;`), runs of whitespace and newlines, CC12M's `<PERSON>` name placeholder,
and now and then lone surrogates. The parser sees a cleaned copy; every character of the copy
remembers the range of the original caption it came from, so a span found in the copy maps back
to exact Python str offsets of the caption as read.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# CC12M replaces person names with this token. The image shows that person, so the placeholder
# is kept as a phrase; the parser sees a capitalised noun in its place so it parses like a name.
PERSON_PLACEHOLDER = "<PERSON>"
PERSON_STAND_IN = "Person"

_MARKUP = re.compile(
    r"(?P<person><PERSON>)"
    r"|(?P<tag></?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]{0,200})?/?>"
    r"|&lt;/?[A-Za-z][A-Za-z0-9]*(?:\s[^<>&]{0,200})?/?&gt;)"
    r"|(?P<entity>&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)"
    r"|(?P<space>\s{2,}|[^\S ])"
    r"|(?P<surrogate>[\ud800-\udfff])"
)


@dataclass(frozen=True)
class SourceText:
    """The text to parse plus, per character, the caption range it stands for."""

    text: str
    starts: list[int]
    ends: list[int]

    def to_caption(self, start: int, end: int) -> tuple[int, int]:
        """Map a non-empty span [start, end) of `text` to the caption's offsets."""
        return self.starts[start], self.ends[end - 1]


def _replacement(match: re.Match[str]) -> str:
    """What the parser sees for one markup match: tags and whitespace become one space.

    So do lone surrogates (from bytes decoded with `surrogateescape`): spaCy cannot hash them
    and would fail the whole batch.
    """
    kind = match.lastgroup
    if kind == "person":
        return PERSON_STAND_IN
    if kind == "entity":
        decoded = html.unescape(match.group())
        # An unknown entity unescapes to itself; a decoded one may be whitespace (&nbsp;).
        if decoded == match.group() or not decoded.isspace():
            return decoded
    return " "


def _collapse_spaces(text: str, starts: list[int], ends: list[int]) -> SourceText:
    """Merge runs of spaces left where markup met whitespace; the kept space spans the run.

    spaCy turns a run of spaces into a whitespace token, which would split a phrase in two.
    """
    if "  " not in text:
        return SourceText(text, starts, ends)
    chars: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    for char, start, end in zip(text, starts, ends):
        if char == " " and chars and chars[-1] == " ":
            new_ends[-1] = end
            continue
        chars.append(char)
        new_starts.append(start)
        new_ends.append(end)
    return SourceText("".join(chars), new_starts, new_ends)


def truncate(caption: str, max_chars: int) -> str:
    """The caption cut to at most `max_chars`, preferably at a space so no word is split."""
    if len(caption) <= max_chars:
        return caption
    cut = caption.rfind(" ", max_chars // 2, max_chars + 1)
    return caption[: cut if cut > 0 else max_chars]


def prepare(caption: str, max_chars: int) -> SourceText:
    """Clean the first `max_chars` characters of `caption` for parsing.

    Each markup match becomes its replacement (whose characters all map to the whole match);
    other characters map to themselves.
    """
    source = truncate(caption, max_chars)
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    position = 0
    for match in _MARKUP.finditer(source):
        m_start, m_end = match.span()
        if m_start > position:
            pieces.append(source[position:m_start])
            starts.extend(range(position, m_start))
            ends.extend(range(position + 1, m_start + 1))
        replacement = _replacement(match)
        if replacement == match.group():
            starts.extend(range(m_start, m_end))
            ends.extend(range(m_start + 1, m_end + 1))
        else:
            starts.extend([m_start] * len(replacement))
            ends.extend([m_end] * len(replacement))
        pieces.append(replacement)
        position = m_end
    if position < len(source):
        pieces.append(source[position:])
        starts.extend(range(position, len(source)))
        ends.extend(range(position + 1, len(source) + 1))
    return _collapse_spaces("".join(pieces), starts, ends)
