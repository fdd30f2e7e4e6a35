"""Caption parsing: noun phrases with exact character spans into the caption."""

from parsers.noun_phrases import DEFAULT_MAX_CHARS, NounPhraseExtractor, Phrase
from parsers.spacy_model import load_spacy_model, resolve_model_name

__all__ = ["DEFAULT_MAX_CHARS", "NounPhraseExtractor", "Phrase", "load_spacy_model", "resolve_model_name"]
