"""The cleaned parser text and its map back to the caption (no spaCy needed)."""

from __future__ import annotations

import pytest

from parsers.source_text import PERSON_STAND_IN, prepare, truncate


def _pieces(caption: str, max_chars: int = 2000) -> list[tuple[str, str]]:
    """(parsed char, caption text it stands for) for each character of the parsed copy."""
    source = prepare(caption, max_chars)
    assert len(source.text) == len(source.starts) == len(source.ends)
    return [(ch, caption[s:e]) for ch, s, e in zip(source.text, source.starts, source.ends)]


def test_plain_text_maps_to_itself() -> None:
    caption = "A dog on a sofa."
    assert prepare(caption, 2000).text == caption
    assert all(ch == original for ch, original in _pieces(caption))


def test_entities_are_decoded_and_map_to_the_whole_entity() -> None:
    source = prepare("Tom &amp; Jerry &#39;s &quot;show&quot;", 2000)
    assert source.text == "Tom & Jerry 's \"show\""
    assert ("&", "&amp;") in _pieces("Tom &amp; Jerry")
    start, end = source.to_caption(source.text.index('"'), len(source.text))
    assert "Tom &amp; Jerry &#39;s &quot;show&quot;"[start:end] == "&quot;show&quot;"


def test_unknown_entity_is_left_as_text() -> None:
    assert prepare("a &bogus; b", 2000).text == "a &bogus; b"


def test_tags_and_whitespace_runs_become_one_space() -> None:
    caption = "a <b>red</b>  car<br />\n\n&lt;i&gt;on&lt;/i&gt; the&nbsp;road"
    source = prepare(caption, 2000)
    assert source.text == "a red car on the road"
    start = source.text.index("red")
    assert source.to_caption(start, start + 3) == (caption.index("red"), caption.index("red") + 3)


def test_person_placeholder_is_parsed_as_a_name_but_maps_to_the_placeholder() -> None:
    caption = "Photo by <PERSON> at the beach"
    source = prepare(caption, 2000)
    assert source.text == f"Photo by {PERSON_STAND_IN} at the beach"
    start = source.text.index(PERSON_STAND_IN)
    s, e = source.to_caption(start, start + len(PERSON_STAND_IN))
    assert caption[s:e] == "<PERSON>"


@pytest.mark.parametrize("caption", ["", " ", "\n\t \r\n", "&nbsp;", "<br>"])
def test_blank_captions_give_blank_text(caption: str) -> None:
    assert prepare(caption, 2000).text.strip() == ""


def test_truncate_cuts_at_a_space_within_the_limit() -> None:
    caption = "word " * 1000
    cut = truncate(caption, 2002)
    assert len(cut) <= 2002 and cut.endswith("word")
    assert truncate("x" * 5000, 100) == "x" * 100
    assert truncate("short", 100) == "short"


def test_parsed_text_never_exceeds_max_chars() -> None:
    source = prepare("a red car. " * 5000, 2000)
    assert len(source.text) <= 2000
    assert max(source.ends) <= 2000


def test_lone_surrogates_become_spaces() -> None:
    source = prepare("a\udc80b", 2000)
    assert source.text == "a b"
    source.text.encode("utf-8")
