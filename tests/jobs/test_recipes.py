"""The GLIP, GRIT and YOLO-World recipes through the job, on real captions and photos."""

from __future__ import annotations

import json
import math

import duckdb
import pyarrow.parquet as pq
import pytest

from jobs.label_cc12m import main
from pipeline.config import build_config
from pipeline.recipes import RECIPES, markdown_table
from pipeline.tools.export import main as export
from pipeline.tools.verify import verify_output
from pipeline.training.targets import LabelFilter, filter_boxes
from schemas import ROW_SCHEMA
from tests.project import CC12M, FAST_FLAGS, ROOT, SHARED

F30K = SHARED / "flickr30k_19img" / "flickr30k_entities_19img-000000.tar"


@pytest.fixture
def real_shards():
    if not (F30K.exists() and CC12M.exists()):
        pytest.skip(f"needs {F30K} and {CC12M} (../shared/data is absent)")
    return f"{F30K} {CC12M}"


def _rows(out) -> list[dict]:
    return [r for f in sorted((out / "parquet").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


@pytest.mark.slow
def test_grit_writes_referring_expressions_and_what_the_parser_dropped(tmp_path, real_shards, tiny_teacher) -> None:
    out = tmp_path / "out"
    args = ["--input", real_shards, "--output", str(out), "--teacher", tiny_teacher, "--recipe", "grit", "--ref-exps",
            "--runner", "inprocess", "--no-progress", "--box-threshold", "0.5", *FAST_FLAGS]
    assert main(args) == 0
    assert verify_output(str(out), real_shards).ok  # verify checks the new columns' invariants too
    rows = _rows(out)
    assert len(rows) == 19 + 32
    expressions = [(r, x) for r in rows for x in r["ref_exps"]]
    assert expressions and any(len(x["text"]) > len(r["phrases"][x["phrase"]]["text"]) for r, x in expressions)
    for row, x in expressions:
        head = row["phrases"][x["phrase"]]
        assert row["caption"][x["start"]:x["end"]] == x["text"]
        assert x["start"] <= head["start"] <= head["end"] <= x["end"]
    for row in rows:
        spans = sorted((x["start"], x["end"]) for x in row["ref_exps"])
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), row["ref_exps"]  # none inside another
        assert all(row["caption"][d["start"]:d["end"]] == d["text"] for d in row["dropped_phrases"])
        assert all(b["score"] >= 0.5 for b in row["boxes"])
    assert {d["reason"] for r in rows for d in r["dropped_phrases"]} & {"pronoun", "abstract_noun", "duplicate"}
    # The GRIT export round-trips: every kept box, and every expression with its head phrase's boxes.
    assert export([str(out), "--format", "grit", "--out", str(tmp_path / "grit.parquet")]) == 0
    exported = {(r["shard"], r["key"]): r for r in pq.read_table(tmp_path / "grit.parquet").to_pylist()}
    for row in rows:
        if row["status"] != "ok" or not row["boxes"]:
            continue
        record, kept = exported[row["shard"], row["key"]], filter_boxes(row, LabelFilter())  # the export's own box filter
        assert len(record["noun_chunks"]) == len(kept)
        heads = {x["phrase"]: x for x in row["ref_exps"]}
        expected = [[float(heads[b["phrase"]]["start"]), float(heads[b["phrase"]]["end"]),
                     b["x0"] / row["width"], b["y0"] / row["height"]] for b in kept if b["phrase"] in heads]
        got = [e[:4] for e in record["ref_exps"]]
        assert len(got) == len(expected)
        assert all(g == pytest.approx(e, abs=1e-6) for g, e in zip(got, expected)), (got, expected)


@pytest.mark.slow
def test_yolo_world_rescores_with_clip_and_marks_pairs_instead_of_dropping_them(tmp_path, tiny_teacher) -> None:
    from teacher.clip.tiny import write_tiny_clip

    if not CC12M.exists():
        pytest.skip(f"needs {CC12M}")
    clip = write_tiny_clip(tmp_path / "clip")
    out = tmp_path / "out"
    args = ["--input", str(CC12M), "--output", str(out), "--teacher", tiny_teacher, "--recipe", "yolo-world",
            "--rescorer", str(clip), "--min-pair-clip", "0.8", "--ref-exps", "--phrase-audit", "--runner", "inprocess",
            "--no-progress", *FAST_FLAGS]
    assert main(args) == 0
    assert verify_output(str(out), str(CC12M)).ok
    rows = _rows(out)
    assert len(rows) == 32 and {r["status"] for r in rows} <= {"ok", "filtered"}
    boxes = [b for r in rows for b in r["boxes"]]
    assert boxes and all(math.isclose(b["rescored"], math.sqrt(b["score"] * b["clip_score"]), rel_tol=1e-4) for b in boxes)
    assert all(b["rescored"] >= 0.3 for b in boxes)
    assert all(0.0 <= r["image_text_score"] <= 1.0 for r in rows)
    filtered = [r for r in rows if r["status"] == "filtered"]
    assert filtered and all("--min-pair-clip 0.8" in r["error"] for r in filtered)  # rows kept, reason given
    con = duckdb.connect()
    n = con.execute(f"SELECT count(*) FROM '{out}/parquet/*.parquet' WHERE status = 'filtered'").fetchone()[0]
    assert n == len(filtered)
    for query in _readme_queries():  # every DuckDB example of the README runs on an output with every column
        con.execute(query.replace("'out/parquet/*.parquet'", f"'{out}/parquet/*.parquet'")).fetchall()


def _readme_queries() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("### DuckDB, with no project code", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    queries = [q.strip() for q in block.split(";") if q.strip()]
    assert len(queries) >= 10
    return queries


@pytest.mark.slow
def test_without_the_new_flags_the_schema_and_hash_are_unchanged(tmp_path, tiny_teacher, generated_shards) -> None:
    base = dict(input="x", output="y", teacher="org/model", spacy_model="en_core_web_sm", fast_decode=True)
    assert build_config(base).config_hash() == "cc3ef5dc99573332"  # an output labelled before these recipes resumes
    out = tmp_path / "out"
    assert main(["--input", str(generated_shards / "00000.tar"), "--output", str(out), "--teacher", tiny_teacher,
                 "--runner", "inprocess", "--no-progress", *FAST_FLAGS]) == 0
    assert pq.read_schema(next((out / "parquet").glob("*.parquet"))).remove_metadata() == ROW_SCHEMA


def test_a_recipe_sets_defaults_every_flag_can_change() -> None:
    base = dict(input="x", output="y", teacher="t")
    grit = build_config(dict(base, recipe="grit"))
    assert (grit.labels.box_threshold, grit.labels.nms_scope, grit.labels.ref_exps) == (0.65, "image", True)
    changed = build_config(dict(base, recipe="grit", box_threshold=0.4, nms_scope="phrase"))
    assert (changed.labels.box_threshold, changed.labels.nms_scope, changed.labels.min_pair_score) == (0.4, "phrase", 0.65)
    assert changed.config_hash() != grit.config_hash()  # the hash sees the resolved values
    assert build_config(dict(base, recipe="glip")).config_hash() == build_config(base).config_hash()
    for name, settings in RECIPES.items():
        assert all(source for _, source in settings.values()), name  # every value says where it comes from


def test_readme_recipe_table_is_the_generated_one() -> None:
    assert markdown_table() in (ROOT / "README.md").read_text(), "regenerate with pipeline.recipes.markdown_table()"


def test_yaml_extends_the_abstract_nouns(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"drop_abstract_nouns": True, "extra_abstract_nouns": ["Vibe", "aesthetic"]}))
    cfg = build_config(dict(input="x", output="y", teacher="t"), str(config))
    assert cfg.labels.extra_abstract_nouns == ("vibe", "aesthetic") and "extra_abstract_nouns" in cfg.hashed_settings()
