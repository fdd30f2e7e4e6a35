"""The config's one definition: sections, the hash resume compares, the flags, YAML, the README table."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pipeline.config import FIELDS, LabelSettings, Policy, Resources, build_config
from pipeline.flags import flag_name, markdown_table, parse_job_args, setting_values
from tests.project import ROOT

BASE = dict(input="in/*.tar", output="out", teacher="org/model", spacy_model="en_core_web_sm")


def test_every_setting_is_in_exactly_one_section() -> None:
    sections = [LabelSettings, Resources, Policy]
    names = [f.name for cls in sections for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names))
    assert set(FIELDS) == {"input", "output", "recipe", *names}  # a recipe only sets defaults of the others


def test_the_hash_is_the_one_outputs_labelled_before_the_sections_carry() -> None:
    """Shards written by earlier versions (flat config, JPEG draft decoding) resume with
    --fast-decode: their manifests carry these hashes, computed by that version for the same
    settings. Without it the hash differs (the teacher sees other pixels), so they are refused."""
    assert build_config(dict(BASE, fast_decode=True)).config_hash() == "cc3ef5dc99573332"
    assert build_config(BASE).config_hash() != "cc3ef5dc99573332"
    changed = build_config(dict(BASE, precision="fp32", box_threshold=0.3, batch_size=4, cpu_workers=3, overwrite=True,
                                fast_decode=True))
    assert changed.config_hash() == "8b028a0fe1a5b2c4"


def test_only_label_settings_change_the_hash() -> None:
    base = build_config(BASE).config_hash()
    for name, (section, field) in FIELDS.items():
        if section in ("resources", "policy"):
            kind = str(field.type)
            value = (not field.default) if "bool" in kind else 7 if ("int" in kind or "float" in kind) else "cpu"
            assert build_config(dict(BASE, **{name: value})).config_hash() == base, name
    assert build_config(dict(BASE, nms_iou=0.6)).config_hash() != base


def test_every_setting_with_a_flag_parses_to_its_field() -> None:
    args = parse_job_args(["--input", "a", "--output", "b", "--teacher", "t", "--box-threshold", "0.3", "--batch-size", "4",
                       "--eager", "--overwrite", "--prompt-mode", "phrases"])
    cfg = build_config(setting_values(args))
    assert (cfg.labels.box_threshold, cfg.resources.batch_size, cfg.resources.fast_teacher) == (0.3, 4, False)
    assert cfg.policy.overwrite and cfg.labels.prompt_mode == "phrases"
    untouched = build_config(setting_values(parse_job_args(["--input", "a", "--output", "b", "--teacher", "t"])))
    assert untouched == build_config(dict(input="a", output="b", teacher="t"))  # flags not given keep the defaults


def test_help_shows_each_default_once_from_the_declaration(capsys) -> None:
    with pytest.raises(SystemExit):
        parse_job_args(["--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "--box-threshold BOX_THRESHOLD keep a box when its best phrase scores at least this" in text
    assert "(default: 0.1)" in text and "(default: 16)" in text
    for name, (_, field) in FIELDS.items():
        if flag_name(name, field):
            assert flag_name(name, field) in text


def test_yaml_takes_flat_names_or_sections(tmp_path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text("box-threshold: 0.2\nbatch_size: 4\nshard_retries: 5\n")
    nested = tmp_path / "nested.yaml"
    nested.write_text("labels:\n  box_threshold: 0.2\nresources:\n  batch_size: 4\npolicy:\n  shard_retries: 5\n")
    a, b = build_config(BASE, str(flat)), build_config(BASE, str(nested))
    assert a == b and a.labels.box_threshold == 0.2 and a.resources.batch_size == 4 and a.policy.shard_retries == 5


def test_the_run_record_keeps_every_setting_by_its_name() -> None:
    assert set(build_config(BASE).to_dict()) == set(FIELDS)


def test_readme_flag_table_is_the_generated_one() -> None:
    """`python -m pipeline.flags` prints the table; the README holds it verbatim."""
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README's flag table with: python -m pipeline.flags"
