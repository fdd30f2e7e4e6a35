"""One real spaCy pipeline for the parser tests (loading it takes about a second)."""

from __future__ import annotations

import pytest

from parsers import NounPhraseExtractor


@pytest.fixture(scope="session")
def extractor() -> NounPhraseExtractor:
    return NounPhraseExtractor()
