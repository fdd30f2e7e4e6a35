"""Caption parsing: noun phrases with exact character spans into the caption."""

from parsers.abstract_nouns import DEFAULT_ABSTRACT_NOUNS
from parsers.noun_phrases import DEFAULT_MAX_CHARS, CaptionParse, DroppedPhrase, NounPhraseExtractor, Phrase
from parsers.referring import RefExp
from parsers.spacy_model import load_spacy_model, resolve_model_name

__all__ = [
    "DEFAULT_ABSTRACT_NOUNS",
    "DEFAULT_MAX_CHARS",
    "CaptionParse",
    "DroppedPhrase",
    "NounPhraseExtractor",
    "Phrase",
    "RefExp",
    "load_spacy_model",
    "resolve_model_name",
]
