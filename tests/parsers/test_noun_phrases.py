"""NounPhraseExtractor on hand-picked tricky captions, with the real spaCy model."""

from __future__ import annotations

import dataclasses
import random

import pytest

from parsers import NounPhraseExtractor, Phrase
from tests.parsers.span_checks import assert_spans_exact

TRICKY_CAPTIONS = [
    "",
    " ",
    "\n\t  \r\n",
    "A group of people &amp; a dog in front of a  sign .",
    "&quot;Keep Calm&quot; - Blue Canvas &copy; 2019",
    "Researcher holding two skulls (&lt;i&gt;Truong Son muntjac&lt;/i&gt;) / &copy;: WWF-UK",
    "<PERSON> at the premiere of <b>The Film</b>, in <PERSON>, Nigeria.<br />Photo / <PERSON>",
    "a dog 🐶 on the sofa 🛋️ with a 👨‍👩‍👧 family",
    "北京的天安门 a red lantern on a gate",
    "Собака в парке, a dog in the park",
    "Cuban Recipes, Bread Recipes, Cooking Recipes, Cuban Desserts, Pan Cubano Recipe, Cuban Bread",
    "Dumbbell, barbell and workout in the gym. Dumbbell, barbell, weights and workout in the gym.",
    "PU Leather Passport Holder Case Cover (L69) -- Colorful World map design",
    "\"\"\"I am the Reason the Rum is always Gone\"\" T-Shirt\"",
    "!!!???...,,,;;; --- *** ###",
    "caf\ufffd au lait in a white cup on a wooden table",
    "x" * 3000,
    "a red car parked next to a white house. " * 1250,
]


@pytest.mark.parametrize("caption", TRICKY_CAPTIONS, ids=range(len(TRICKY_CAPTIONS)))
def test_spans_index_the_original_caption(extractor: NounPhraseExtractor, caption: str) -> None:
    [phrases] = extractor.extract([caption])
    assert_spans_exact(caption, phrases)


def texts(extractor: NounPhraseExtractor, caption: str) -> list[str]:
    [phrases] = extractor.extract([caption])
    assert_spans_exact(caption, phrases)
    return [p.text for p in phrases]


@pytest.mark.parametrize("caption", ["", " ", "\n\t \r\n", "!!! ... ???", "&nbsp;<br>"])
def test_blank_or_symbol_captions_have_no_phrases(extractor: NounPhraseExtractor, caption: str) -> None:
    assert texts(extractor, caption) == []


def test_none_counts_as_an_empty_caption(extractor: NounPhraseExtractor) -> None:
    assert extractor.extract([None, "a dog"]) == [[], [Phrase("a dog", 0, 5)]]  # type: ignore[list-item]


def test_html_entities_keep_original_offsets(extractor: NounPhraseExtractor) -> None:
    caption = "A group of people &amp; a dog in front of a sign ."
    assert texts(extractor, caption) == ["A group of people", "a dog", "a sign"]
    quoted = "&quot;Keep Calm&quot; - Blue Canvas"
    assert "Blue Canvas" in texts(extractor, quoted)
    assert not any("&quot" in t or t.endswith(";") for t in texts(extractor, quoted))


def test_an_entity_inside_a_phrase_stays_in_its_text(extractor: NounPhraseExtractor) -> None:
    caption = "a Procter &amp; Gamble factory"
    assert texts(extractor, caption) == ["a Procter &amp; Gamble factory"]


def test_symbol_only_entities_are_not_phrases(extractor: NounPhraseExtractor) -> None:
    # The parser sees "©", a symbol: no phrase, although the caption's "&copy;" has letters.
    found = texts(extractor, "Researcher holding two skulls / &copy;: WWF-UK")
    assert "WWF-UK" in found
    assert not any(t.startswith("&copy") for t in found)


def test_person_placeholder_is_a_phrase(extractor: NounPhraseExtractor) -> None:
    caption = "Last Stop for the 7 Train | by <PERSON>."
    [phrases] = extractor.extract([caption])
    assert Phrase("<PERSON>", caption.index("<PERSON>"), caption.index("<PERSON>") + 8) in phrases


def test_emoji_are_not_phrases_and_do_not_shift_offsets(extractor: NounPhraseExtractor) -> None:
    caption = "a dog 🐶 on the sofa 🛋️"
    assert texts(extractor, caption) == ["a dog", "the sofa"]


def test_non_latin_text_does_not_break_english_phrases(extractor: NounPhraseExtractor) -> None:
    assert {"a red lantern", "a gate"} <= set(texts(extractor, "北京的天安门 a red lantern on a gate"))


def test_keyword_list_gives_one_phrase_per_item(extractor: NounPhraseExtractor) -> None:
    caption = "Cuban Recipes, Bread Recipes, Cooking Recipes, Cuban Desserts"
    assert texts(extractor, caption) == ["Cuban Recipes", "Bread Recipes", "Cooking Recipes", "Cuban Desserts"]


def test_anaphoric_pronouns_are_dropped(extractor: NounPhraseExtractor) -> None:
    caption = "A man holds it while she watches them and the boy who laughs at what that is."
    assert texts(extractor, caption) == ["A man", "the boy"]


def test_indefinite_pronouns_that_introduce_an_entity_are_kept(extractor: NounPhraseExtractor) -> None:
    assert texts(extractor, "A woman is holding something .") == ["A woman", "something"]


def test_of_complements_are_joined(extractor: NounPhraseExtractor) -> None:
    caption = "A group of people sits on the edge of a pool ."
    assert texts(extractor, caption) == ["A group of people", "the edge of a pool"]


def test_complex_preposition_noun_is_dropped(extractor: NounPhraseExtractor) -> None:
    caption = "A man stands in front of a brick wall on top of a hill ."
    assert texts(extractor, caption) == ["A man", "a brick wall", "a hill"]


def test_noun_coordination_is_split_but_adjective_coordination_is_not(extractor: NounPhraseExtractor) -> None:
    assert texts(extractor, "A dog with a muzzle and blue jacket .") == ["A dog", "a muzzle", "blue jacket"]
    assert texts(extractor, "A brown and white dog runs .") == ["A brown and white dog"]


def test_repeated_text_keeps_the_first_occurrence(extractor: NounPhraseExtractor) -> None:
    caption = "A dog chases a ball while another dog watches a dog and a Ball ."
    [phrases] = extractor.extract([caption])
    assert [(p.text, p.start) for p in phrases] == [
        ("A dog", 0),
        ("a ball", caption.index("a ball")),
        ("another dog", caption.index("another dog")),
    ]


def test_long_caption_is_parsed_only_up_to_max_chars(extractor: NounPhraseExtractor) -> None:
    caption = "".join(f"a red car number {i} next to a white house. " for i in range(1200))
    assert len(caption) > 50_000
    [phrases] = extractor.extract([caption])
    assert_spans_exact(caption, phrases)
    assert phrases and max(p.end for p in phrases) <= extractor.max_chars
    short = NounPhraseExtractor(batch_size=8, max_chars=100)
    [few] = short.extract([caption])
    assert few and max(p.end for p in few) <= 100


def test_batching_keeps_order_and_results(extractor: NounPhraseExtractor) -> None:
    captions = [f"a red car and {n} white houses" for n in range(7)] + ["", "a dog"]
    small_batches = NounPhraseExtractor(model=extractor.model_name, batch_size=2)
    assert small_batches.extract(captions) == extractor.extract(captions)
    assert [p.text for p in extractor.extract(captions)[-1]] == ["a dog"]
    assert len(extractor.extract(captions)) == len(captions)


def test_phrase_is_a_frozen_value() -> None:
    phrase = Phrase("a dog", 0, 5)
    assert phrase == Phrase("a dog", 0, 5) and hash(phrase) == hash(Phrase("a dog", 0, 5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        phrase.start = 1  # type: ignore[misc]


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"n_process": 0}, {"max_chars": 0}])
def test_bad_settings_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        NounPhraseExtractor(**kwargs)


def test_lone_surrogates_do_not_fail_the_batch(extractor: NounPhraseExtractor) -> None:
    captions = ["a red car", "a dog \udcff on a sofa", "a blue house"]
    results = extractor.extract(captions)
    assert [[p.text for p in found] for found in results] == [["a red car"], ["a dog", "a sofa"], ["a blue house"]]


def test_random_hostile_captions_keep_exact_spans(extractor: NounPhraseExtractor) -> None:
    """Seeded random mixes of markup, odd Unicode and words, plus random code points."""
    rng = random.Random(1234)
    parts = [
        "a", "dog", "the", "of", "red", "and", "it", "group", "Person", "<PERSON>", "&amp;", "&lt;b&gt;",
        "<br/>", "&#x1F600;", "&#99999999;", "&#xD800;", "&;", "& amp;", "\n", "  ", "\x00", "\u200b",
        "\u202e", "\udc80", "🐶", "犬", "(", ")", '"', "'s", "-", "—",
    ]
    captions = [
        "".join(rng.choice(parts) + rng.choice(["", " ", " ", ","]) for _ in range(rng.randint(0, 40)))
        for _ in range(300)
    ]
    captions += ["".join(chr(rng.randint(1, 0x10FFFF)) for _ in range(rng.randint(0, 60))) for _ in range(100)]
    for caption, phrases in zip(captions, extractor.extract(captions)):
        assert_spans_exact(caption, phrases)
