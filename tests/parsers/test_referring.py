"""GRIT's referring expressions (Kosmos-2, arXiv 2306.14824, section 2), with the real model."""

from __future__ import annotations

import pytest

from parsers import CaptionParse, NounPhraseExtractor, RefExp
from tests.parsers.span_checks import assert_parse_exact


def parse(extractor: NounPhraseExtractor, caption: str) -> CaptionParse:
    [found] = extractor.analyse([caption], ref_exps=True)
    assert_parse_exact(caption, found)
    return found


def expressions(extractor: NounPhraseExtractor, caption: str) -> list[tuple[str, str]]:
    """(expression, the phrase whose boxes it inherits) pairs."""
    found = parse(extractor, caption)
    return [(e.text, found.phrases[e.phrase].text) for e in found.ref_exps]


def test_grit_figure_3_a_dog_in_a_field_of_flowers(extractor: NounPhraseExtractor) -> None:
    """The paper's example: 'a dog' expands to the whole caption; 'a field of flowers' and
    'flowers' are contained in it and dropped; the expression inherits the boxes of 'a dog'."""
    caption = "a dog in a field of flowers"
    found = parse(extractor, caption)
    assert [p.text for p in found.phrases] == ["a dog", "a field of flowers"]
    assert found.ref_exps == [RefExp(caption, 0, len(caption), 0)]


def test_grit_flickr_example_a_man_in_a_blue_hard_hat(extractor: NounPhraseExtractor) -> None:
    """Section 4.1: 'A man' of this Flickr30k caption is referred to as "A man in a blue hard hat
    and orange safety vest" (the subject's subtree ends before the verb)."""
    caption = "A man in a blue hard hat and orange safety vest stands in an intersection while holding a flag ."
    assert expressions(extractor, caption) == [
        ("A man in a blue hard hat and orange safety vest", "A man"),
        ("an intersection", "an intersection"),
        ("a flag", "a flag"),
    ]


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        (  # Figure 7
            "A Keto Chicken Nugget being dipped into a bowl of keto honey mustard",
            {("a bowl of keto honey mustard", "a bowl of keto honey mustard")},
        ),
        (  # Figure 8
            "Solar cells on a red roof are in the foreground. The Sydney skyline is in the background.",
            {("Solar cells on a red roof", "Solar cells"), ("The Sydney skyline", "The Sydney skyline")},
        ),
        (  # Figure 9
            (
                "Woman standing outdoors in a city landscape and wearing a hijab. Her arm is around a young "
                "girl who is hugging her side. The background is blurred."
            ),
            {("a young girl who is hugging her side", "a young girl"), ("a hijab", "a hijab")},
        ),
    ],
)
def test_grit_appendix_captions(extractor: NounPhraseExtractor, caption: str, expected: set) -> None:
    assert expected <= set(expressions(extractor, caption))


def test_grit_figure_6_caption_ends_on_no_dangling_word(extractor: NounPhraseExtractor) -> None:
    """The small model leaves "with" and "and" without their objects here; no expression ends on them."""
    caption = (
        "A serving of kale and roasted vegetable salad on an aluminium tray served with a small white "
        "bowl filled with creamy light green avocado Caesar dressing"
    )
    found = expressions(extractor, caption)
    assert ("kale", "kale") in found
    assert not any(text.endswith((" with", " and")) for text, _ in found)


def test_coordinated_chunks_are_not_expanded(extractor: NounPhraseExtractor) -> None:
    """'a cat' heads "on a sofa" in the parse, but both conjuncts stay as they are."""
    assert expressions(extractor, "a dog and a cat on a sofa") == [
        ("a dog", "a dog"),
        ("a cat", "a cat"),
        ("a sofa", "a sofa"),
    ]


def test_relative_clause_is_part_of_the_expression(extractor: NounPhraseExtractor) -> None:
    assert expressions(extractor, "a man who is riding a horse") == [("a man who is riding a horse", "a man")]


def test_prepositional_chain_gives_one_expression(extractor: NounPhraseExtractor) -> None:
    caption = "a bowl of soup on a wooden table in a kitchen"
    found = parse(extractor, caption)
    assert [p.text for p in found.phrases] == ["a bowl of soup", "a wooden table", "a kitchen"]
    assert found.ref_exps == [RefExp(caption, 0, len(caption), 0)]


def test_sentence_final_stop_is_not_part_of_an_expression(extractor: NounPhraseExtractor) -> None:
    assert expressions(extractor, "A dog with a muzzle and blue jacket .") == [
        ("A dog with a muzzle and blue jacket", "A dog")
    ]


def test_overlapping_candidates_keep_the_longer(extractor: NounPhraseExtractor) -> None:
    """'that blue window' is a phrase; the parser put "that" outside the subtree of 'chair garden',
    whose expansion starts at "blue": the two overlap without nesting, and the longer is kept."""
    caption = "that blue window and chair garden for sale"
    found = parse(extractor, caption)
    assert [p.text for p in found.phrases] == ["that blue window", "chair garden", "sale"]
    assert found.ref_exps == [RefExp("blue window and chair garden for sale", 5, len(caption), 1)]
    first = found.phrases[0]
    assert found.ref_exps[0].start < first.end and first.start < found.ref_exps[0].start


def test_no_kept_expression_is_contained_in_another(extractor: NounPhraseExtractor) -> None:
    captions = [
        "a dog in a field of flowers next to a man who is holding a cup of coffee",
        "Two little guys sitting on a wall with a ball and a kite in the park",
        "Cuban Recipes, Bread Recipes, Cooking Recipes, Cuban Desserts",
    ]
    for caption, found in zip(captions, extractor.analyse(captions, ref_exps=True)):
        assert_parse_exact(caption, found)
        for a in found.ref_exps:
            for b in found.ref_exps:
                assert a is b or not (b.start <= a.start and a.end <= b.end), (caption, a, b)


def test_expressions_keep_exact_spans_through_markup(extractor: NounPhraseExtractor) -> None:
    caption = "Tom &amp; Jerry &quot;show&quot; on a <b>big</b>  TV<br/>"
    found = parse(extractor, caption)
    assert [e.text for e in found.ref_exps] == ["Tom &amp; Jerry &quot;show&quot; on a <b>big</b>  TV"]


def test_expressions_are_built_only_when_asked(extractor: NounPhraseExtractor) -> None:
    [found] = extractor.analyse(["a dog in a field of flowers"])
    assert found.ref_exps == []


def test_a_duplicate_phrase_gets_no_expression(extractor: NounPhraseExtractor) -> None:
    """The second 'a dog' is dropped as a duplicate; its boxes go to the first, so no expression
    ("a dog in the grass") can inherit them alone."""
    caption = "a dog on a sofa and a dog in the grass"
    found = parse(extractor, caption)
    assert [p.text for p in found.phrases] == ["a dog", "a sofa", "the grass"]
    assert {e.phrase for e in found.ref_exps} <= {0, 1, 2}
    assert not any(e.text.startswith("a dog in") for e in found.ref_exps)


def test_ref_exp_is_a_frozen_value() -> None:
    assert RefExp("a dog", 0, 5, 0) == RefExp("a dog", 0, 5, 0)
    with pytest.raises(AttributeError):
        RefExp("a dog", 0, 5, 0).phrase = 1  # type: ignore[misc]
