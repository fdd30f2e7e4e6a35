"""Abstract nouns: phrases headed by them name nothing a teacher can put a box on.

GRIT (Kosmos-2, arXiv 2306.14824, section 2) "eliminate[s] certain abstract noun phrases that
are challenging to recognize in the image, such as 'time', 'love', and 'freedom', to reduce
potential noise", without publishing its list. `DEFAULT_ABSTRACT_NOUNS` is ours.

The rule for the list: a noun (a lemma, lower-case) is in it when, in its common senses in
image captions, it names nothing one could draw a box around: a mental or emotional state
(idea, love, fear), an abstract quality or value (freedom, quality, importance),
a stretch of time (time, moment, year), a manner, kind or relation (way, kind, type, reason,
fact). A noun is left out when one common sense is a visible thing, because dropping it loses
boxes while keeping an abstract phrase costs one phrase the teacher's threshold usually leaves
unboxed: present (a gift), change (coins), case (a phone case), goal (a soccer goal), number
(a house number), lot (a parking lot), plan (a floor plan), form, issue (of a magazine), level,
balance, support, security (a checkpoint), development (housing), growth (of plants), solution
(in a beaker), style, design, art, music, light, nature, life, beauty, world, home, event, day,
night and the seasons (a scene at that time: the whole image) stay out of the list.

The rule is off unless the caller passes a set (this one or their own): a phrase is dropped
only when its head noun is in the set and so is the head of each "of" complement joined to
it, so "the concept of love" goes but "a kind of dog" and "a variety of fruits" stay: their
head word is abstract, the thing in the box is the complement.
"""

from __future__ import annotations

from typing import Callable

from spacy.tokens import Span, Token

DEFAULT_ABSTRACT_NOUNS: frozenset[str] = frozenset(
    {
        # Thought and knowledge.
        "idea", "concept", "notion", "thought", "opinion", "belief", "knowledge", "memory",
        "imagination", "mind", "intention", "purpose", "meaning", "understanding", "wisdom",
        "truth", "theory", "logic", "reason", "fact", "information", "attention", "awareness",
        "consciousness", "curiosity", "inspiration", "creativity", "motivation", "philosophy",
        # Feelings.
        "love", "hate", "hatred", "joy", "happiness", "sadness", "sorrow", "fear", "anger", "hope",
        "pride", "shame", "grief", "passion", "desire", "faith", "trust", "courage", "emotion",
        "feeling", "mood", "anxiety", "stress", "pleasure", "fun", "excitement", "gratitude",
        "kindness", "compassion", "loneliness", "nostalgia", "romance", "peace",
        # Qualities, values and states.
        "freedom", "liberty", "quality", "importance", "simplicity", "complexity", "elegance",
        "strength", "energy", "health", "safety", "privacy", "harmony", "diversity",
        "equality", "justice", "democracy", "independence", "identity", "reality", "existence",
        "success", "failure", "luck", "chance", "opportunity", "possibility", "risk", "danger",
        "death", "friendship", "marriage", "respect", "condition", "situation", "circumstance",
        # Time.
        "time", "moment", "period", "era", "age", "future", "past", "history", "duration",
        "while", "instant", "eternity", "lifetime", "occasion", "hour", "minute", "week", "month",
        "year", "decade", "century",
        # Manner, kind, quantity and relation.
        "way", "manner", "kind", "type", "sort", "variety", "method", "approach", "process",
        "technique", "version", "degree", "extent", "amount", "aspect", "example", "instance",
        "relationship", "relation", "difference", "similarity", "comparison", "context",
        "theme", "topic", "matter", "problem", "trouble", "experience", "activity", "behavior",
        "behaviour", "habit", "tradition", "cause", "result", "consequence", "advice", "choice",
        "decision", "question", "answer", "education", "learning", "science",
        "religion", "politics", "economy", "technology", "progress",
        "improvement", "innovation",
    }
)

Lemmatize = Callable[[Token], str]


def _of_complement(token: Token, phrase: Span) -> Token | None:
    """The head of the "of" complement `token` governs inside `phrase`: "kind" -> "dog"."""
    for preposition in token.rights:
        if preposition.lower_ != "of" or not phrase.start <= preposition.i < phrase.end:
            continue
        for complement in preposition.rights:
            if complement.dep_ == "pobj" and phrase.start <= complement.i < phrase.end:
                return complement
    return None


def is_abstract_phrase(phrase: Span, abstract_nouns: frozenset[str], lemma: Lemmatize) -> bool:
    """Whether every head along the phrase's "of" chain is an abstract noun (module docstring)."""
    head: Token | None = phrase.root
    while head is not None:
        if lemma(head) not in abstract_nouns:
            return False
        head = _of_complement(head, phrase)
    return True
