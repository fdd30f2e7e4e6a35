"""Rules that turn spaCy's base noun chunks into phrases a grounding teacher can box.

spaCy's `noun_chunks` are base NPs: "a group", "people", "front", "it". Grounding wants the
mention of a visible thing, so on top of the chunks this module

1. adds the nouns spaCy's English chunker skips because the parser labelled them `dep` or
   `npadvmod`, as it often does in fragmentary text ("Two little guys sitting on a wall");
2. drops the bare noun of a complex preposition ("in *front* of", "on *top* of"): it names a
   relation, not an object;
3. splits a chunk that the parser glued across a noun coordination ("a muzzle and blue jacket"
   -> "a muzzle", "blue jacket") while leaving coordinated modifiers ("a brown and white dog",
   "a rock and roll band") whole;
4. joins a chunk with its "of" complement ("a group" + "of" + "people" -> "a group of people",
   "the edge of the pool"): the whole NP names the thing in the box, the head alone often
   does not (a group, a piece, a pile);
5. drops pronouns that name no box of their own: anaphoric ones (it, them, who, which, that,
   this, another, ...) point to an entity the caption already names or to nothing visible, and
   quantifiers (nothing, everything, all) pick out no single thing. Indefinite pronouns that
   introduce a new entity ("someone", "something") are kept: they are the only mention of what
   is in the box.

Every dropped candidate is returned with its reason, so callers can report what was left out.
"""

from __future__ import annotations

from spacy.tokens import Doc, Span, Token

# Pronouns that introduce a new, visible entity rather than refer back to a named one.
INDEFINITE_PRONOUNS = frozenset(
    {"someone", "somebody", "something", "everyone", "everybody", "one", "ones"}
)
# Pronoun-like in every use; a one-word chunk of these is dropped even when mis-tagged.
UNBOXABLE_WORDS = frozenset(
    {
        "it", "its", "itself", "he", "him", "his", "himself", "she", "her", "hers", "herself",
        "they", "them", "their", "theirs", "themselves", "i", "me", "my", "mine", "myself",
        "we", "us", "our", "ours", "ourselves", "you", "your", "yours", "yourself", "yourselves",
        "who", "whom", "whose", "which", "what", "whatever", "whichever", "whoever", "that",
        "this", "these", "those", "there", "another", "other", "others", "both", "each",
        "either", "neither", "all", "some", "any", "none", "nothing", "everything", "anything",
        "anyone", "anybody", "nobody",
    }
)
_NOUN_POS = frozenset({"NOUN", "PROPN"})
_NOUN_MODIFIER_DEPS = frozenset({"amod", "compound", "nummod"})
# Dependency labels of nominal heads that spaCy's English `noun_chunks` does not look at.
_EXTRA_HEAD_DEPS = frozenset({"dep", "npadvmod"})


def _base_chunks(doc: Doc) -> list[Span]:
    """spaCy's noun chunks plus chunks headed by nouns it skipped (see `_EXTRA_HEAD_DEPS`)."""
    chunks = list(doc.noun_chunks)
    covered = {i for chunk in chunks for i in range(chunk.start, chunk.end)}
    extra = []
    for token in doc:
        if token.pos_ not in _NOUN_POS or token.dep_ not in _EXTRA_HEAD_DEPS or token.i in covered:
            continue
        start = token.left_edge.i
        if any(i in covered for i in range(start, token.i)):
            continue
        extra.append(doc[start : token.i + 1])
        covered.update(range(start, token.i + 1))
    return sorted(chunks + extra, key=lambda span: span.start) if extra else chunks


def _is_unboxable_pronoun(chunk: Span) -> bool:
    root = chunk.root
    word = root.lower_
    if word in INDEFINITE_PRONOUNS:
        return False
    return root.pos_ == "PRON" or (len(chunk) == 1 and word in UNBOXABLE_WORDS)


def _is_complex_preposition_noun(chunk: Span) -> bool:
    """A bare noun between a preposition and "of": "in front of", "on top of", "by way of"."""
    doc = chunk.doc
    if len(chunk) != 1 or chunk.start == 0 or chunk.end >= len(doc):
        return False
    before, after = doc[chunk.start - 1], doc[chunk.end]
    return before.pos_ == "ADP" and after.lower_ == "of" and chunk.root.tag_ == "NN"


def _split_noun_coordination(chunk: Span) -> list[Span]:
    """Split at a coordinating conjunction whose left neighbour is a common noun, not the head.

    "a muzzle and blue jacket" splits; "a brown and white dog" (adjectives), "a rock and roll
    band" (two nouns coordinated as one modifier) and "Procter & Gamble" (names) do not.
    """
    doc = chunk.doc
    pieces: list[Span] = []
    start = chunk.start
    for token in chunk:
        if token.pos_ != "CCONJ" or token.i <= start or token.i + 1 >= chunk.end:
            continue
        left, right = doc[token.i - 1], doc[token.i + 1]
        # Two bare nouns coordinated under one head ("rock and roll band") modify it together;
        # a left noun with its own modifier ("a black shirt and tan pants") is a full NP.
        left_is_bare = not any(child.dep_ in _NOUN_MODIFIER_DEPS for child in left.lefts)
        noun_modifier_pair = (
            left_is_bare and right.dep_ == "conj" and right.head.i == left.i and right.pos_ in _NOUN_POS
        )
        if left.pos_ == "NOUN" and left.i != chunk.root.i and not noun_modifier_pair:
            pieces.append(doc[start : token.i])
            start = token.i + 1
    pieces.append(doc[start : chunk.end])
    return [p for p in pieces if len(p)]


def _governs(span: Span, token: Token) -> bool:
    return span.start <= token.head.i < span.end


def _join_of_complements(spans: list[Span]) -> list[Span]:
    """Merge span A, "of", span B into one span when B is the object of an "of" that A heads."""
    merged: list[Span] = []
    for span in spans:
        if merged:
            previous = merged[-1]
            doc = span.doc
            gap = doc[previous.end] if previous.end < len(doc) else None
            if (
                gap is not None
                and gap.lower_ == "of"
                and span.start == previous.end + 1
                and _governs(previous, gap)
                and span.root.head.i == gap.i
                and not _is_unboxable_pronoun(previous)
                and not _is_unboxable_pronoun(span)
            ):
                merged[-1] = doc[previous.start : span.end]
                continue
        merged.append(span)
    return merged


def _trim(span: Span) -> Span | None:
    """Drop leading/trailing punctuation, spaces and conjunctions."""
    start, end = span.start, span.end
    doc = span.doc
    while start < end and (doc[start].is_punct or doc[start].is_space or doc[start].pos_ == "CCONJ"):
        start += 1
    while end > start and (doc[end - 1].is_punct or doc[end - 1].is_space or doc[end - 1].pos_ == "CCONJ"):
        end -= 1
    return doc[start:end] if end > start else None


# Why a candidate phrase was dropped; the reasons `noun_phrases` reports in `DroppedPhrase`.
RELATION_NOUN = "relation_noun"
PRONOUN = "pronoun"
NO_LETTERS = "no_letters"


def candidate_spans(doc: Doc) -> tuple[list[Span], list[tuple[Span, str]]]:
    """The phrase spans of a parsed caption, and the candidates the rules dropped, with why.

    Kept spans are in document order and do not overlap. A chunk piece with nothing left after
    trimming punctuation, spaces and conjunctions is reported as `NO_LETTERS`: a noun chunk
    reaches that state only when the tagger took punctuation for its noun.
    """
    pieces: list[Span] = []
    dropped: list[tuple[Span, str]] = []
    for chunk in _base_chunks(doc):
        if _is_complex_preposition_noun(chunk):
            dropped.append((chunk, RELATION_NOUN))
            continue
        for piece in _split_noun_coordination(chunk):
            trimmed = _trim(piece)
            if trimmed is None:
                dropped.append((piece, NO_LETTERS))
            else:
                pieces.append(trimmed)
    kept: list[Span] = []
    for span in _join_of_complements(pieces):
        if _is_unboxable_pronoun(span):
            dropped.append((span, PRONOUN))
        else:
            kept.append(span)
    return kept, dropped
