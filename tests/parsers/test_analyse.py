"""`NounPhraseExtractor.analyse`: what each filter dropped, the abstract-noun rule, the parse cap."""

from __future__ import annotations

import pytest

from parsers import DEFAULT_ABSTRACT_NOUNS, CaptionParse, DroppedPhrase, NounPhraseExtractor
from tests.parsers.span_checks import assert_parse_exact
from tests.parsers.test_noun_phrases import TRICKY_CAPTIONS


def analyse_one(extractor: NounPhraseExtractor, caption: str, **options) -> CaptionParse:
    [found] = extractor.analyse([caption], **options)
    assert_parse_exact(caption, found)
    return found


def dropped_at(caption: str, text: str, reason: str, occurrence: int = 0) -> DroppedPhrase:
    """The expected record for the `occurrence`-th `text` in `caption`."""
    start = -1
    for _ in range(occurrence + 1):
        start = caption.index(text, start + 1)
    return DroppedPhrase(text, start, start + len(text), reason)


def test_phrases_equal_extract_on_tricky_captions(extractor: NounPhraseExtractor) -> None:
    found = extractor.analyse(TRICKY_CAPTIONS, ref_exps=True)
    assert [parse.phrases for parse in found] == extractor.extract(TRICKY_CAPTIONS)
    for caption, parse in zip(TRICKY_CAPTIONS, found):
        assert_parse_exact(caption, parse)


def test_none_counts_as_an_empty_caption(extractor: NounPhraseExtractor) -> None:
    assert extractor.analyse([None], ref_exps=True) == [CaptionParse([], [], [], None)]  # type: ignore[list-item]


def test_pronouns_are_reported(extractor: NounPhraseExtractor) -> None:
    caption = "A man holds it while she watches them ."
    assert analyse_one(extractor, caption).dropped == [
        dropped_at(caption, "it", "pronoun"),
        dropped_at(caption, "she", "pronoun"),
        dropped_at(caption, "them", "pronoun"),
    ]


def test_relation_nouns_are_reported(extractor: NounPhraseExtractor) -> None:
    caption = "A man stands in front of a brick wall on top of a hill ."
    assert analyse_one(extractor, caption).dropped == [
        dropped_at(caption, "front", "relation_noun"),
        dropped_at(caption, "top", "relation_noun"),
    ]


def test_phrases_without_letters_are_reported_with_caption_offsets(extractor: NounPhraseExtractor) -> None:
    caption = "Orchid Jungle<br>Hawaiian Dresses<br>100% Rayon<br>"
    found = analyse_one(extractor, caption)
    assert dropped_at(caption, "100", "no_letters") in found.dropped
    assert "Rayon" in [p.text for p in found.phrases]


def test_duplicates_are_reported_after_the_first_occurrence(extractor: NounPhraseExtractor) -> None:
    caption = "A dog chases a ball while another dog watches a dog and a Ball ."
    assert analyse_one(extractor, caption).dropped == [
        dropped_at(caption, "a dog", "duplicate"),
        dropped_at(caption, "a Ball", "duplicate"),
    ]


def test_abstract_rule_is_off_unless_a_set_is_given(extractor: NounPhraseExtractor) -> None:
    caption = "Moments of joy at the beach with a dog"
    off = analyse_one(extractor, caption)
    assert [p.text for p in off.phrases] == ["Moments of joy", "the beach", "a dog"]
    assert off.dropped == []
    on = analyse_one(extractor, caption, abstract_nouns=DEFAULT_ABSTRACT_NOUNS)
    assert [p.text for p in on.phrases] == ["the beach", "a dog"]
    assert on.dropped == [dropped_at(caption, "Moments of joy", "abstract_noun")]


def test_abstract_rule_looks_through_of_complements(extractor: NounPhraseExtractor) -> None:
    """'the concept of love' names nothing visible; 'a kind of dog' names a dog."""
    caption = "the concept of love and a kind of dog"
    found = analyse_one(extractor, caption, ref_exps=True, abstract_nouns=DEFAULT_ABSTRACT_NOUNS)
    assert [p.text for p in found.phrases] == ["a kind of dog"]
    assert found.dropped == [dropped_at(caption, "the concept of love", "abstract_noun")]
    assert [(e.text, e.phrase) for e in found.ref_exps] == [("a kind of dog", 0)]


def test_abstract_rule_takes_the_users_set_and_lemmas(extractor: NounPhraseExtractor) -> None:
    caption = "Two dogs and a cat on a sofa"
    found = analyse_one(extractor, caption, ref_exps=True, abstract_nouns=frozenset({"dog"}))
    assert [p.text for p in found.phrases] == ["a cat", "a sofa"]
    assert found.dropped == [dropped_at(caption, "Two dogs", "abstract_noun")]
    assert all(found.phrases[e.phrase].text in e.text for e in found.ref_exps)


def test_default_abstract_nouns_hold_the_papers_examples_but_no_visible_things() -> None:
    assert {"time", "love", "freedom", "idea", "moment", "way", "kind", "type", "fact"} <= DEFAULT_ABSTRACT_NOUNS
    assert not {"present", "change", "case", "goal", "number", "light", "art", "day"} & DEFAULT_ABSTRACT_NOUNS
    assert all(noun == noun.lower().strip() for noun in DEFAULT_ABSTRACT_NOUNS)


def test_a_pipeline_without_lemmatizer_matches_words(extractor: NounPhraseExtractor, tmp_path) -> None:
    """A folder saved from the loaded pipeline has no lemmatizer: the rule then compares the
    lower-case word, so the plural "moments" escapes a set holding "moment"."""
    extractor.nlp.to_disk(tmp_path / "model")
    saved = NounPhraseExtractor(model=str(tmp_path / "model"))
    [singular, plural] = saved.analyse(["A Moment at sea", "Moments at sea"], abstract_nouns=frozenset({"moment"}))
    assert [(d.text, d.reason) for d in singular.dropped] == [("A Moment", "abstract_noun")]
    assert [p.text for p in plural.phrases] == ["Moments", "sea"]


def test_parse_cap_is_reported(extractor: NounPhraseExtractor) -> None:
    caption = "".join(f"a red car number {i} next to a white house. " for i in range(100))
    short = NounPhraseExtractor(model=extractor.model_name, max_chars=100)
    found = analyse_one(short, caption, ref_exps=True)
    assert found.phrases == short.extract([caption])[0]
    assert found.truncated_at is not None and 50 <= found.truncated_at <= 100
    assert caption[found.truncated_at] == " "
    assert found.dropped[-1] == DroppedPhrase(
        caption[found.truncated_at :], found.truncated_at, len(caption), "beyond_parse_cap"
    )
    assert all(e.end <= found.truncated_at for e in found.ref_exps)


def test_a_caption_within_the_cap_is_not_truncated(extractor: NounPhraseExtractor) -> None:
    caption = "x" * extractor.max_chars
    assert analyse_one(extractor, caption).truncated_at is None
    assert analyse_one(extractor, caption + " y").truncated_at == extractor.max_chars


@pytest.mark.parametrize("caption", ["a dog", "A man holds it ."])
def test_caption_parse_is_a_frozen_value(extractor: NounPhraseExtractor, caption: str) -> None:
    found = analyse_one(extractor, caption)
    assert found == analyse_one(extractor, caption)
    with pytest.raises(AttributeError):
        found.truncated_at = 1  # type: ignore[misc]
