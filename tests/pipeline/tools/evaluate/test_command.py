"""`glip-evaluate`: the command from gold (and images) to numbers, its report, and bad input."""

from __future__ import annotations

import json

import pytest

from pipeline.tools.evaluate.command import main
from pipeline.tools.evaluate.gold import read_gold
from schemas.rows import empty_row
from tests.pipeline.output_fixture import moto_s3, upload, write_shard
from tests.project import SHARED

F30K = SHARED / "flickr30k_19img"
GOLD = F30K / "captions_gold_phrases.jsonl"
IMAGES = F30K / "flickr30k_entities_19img-000000.tar"


@pytest.fixture
def gold_path():
    if not GOLD.exists():
        pytest.skip(f"needs {GOLD} (../shared/data is absent)")
    return str(GOLD)


def _perfect_rows(gold_path: str, merged: bool = False) -> list[dict]:
    """Rows whose phrases are the gold phrases and whose boxes are the gold boxes (score 0.9),
    or each phrase's gold boxes merged into their enclosing box."""
    rows = []
    for g in read_gold(gold_path, "flickr30k"):
        row = empty_row(g.key, "gold")
        row.update(caption=g.caption, width=g.width, height=g.height, status="ok", image_ext="jpg", exif_orientation=1,
                   phrases=[{"text": p.text, "start": p.start, "end": p.end} for p in g.phrases])
        boxes = [(i, b) for i, p in enumerate(g.phrases) for b in p.boxes]
        if merged:
            boxes = [(i, (min(b[0] for b in p.boxes), min(b[1] for b in p.boxes), max(b[2] for b in p.boxes),
                          max(b[3] for b in p.boxes))) for i, p in enumerate(g.phrases)]
        row["boxes"] = [{"phrase": i, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "score": 0.9} for i, b in boxes]
        rows.append(row)
    return rows


def test_predictions_equal_to_gold_score_one_and_write_json_and_report(tmp_path, gold_path, capsys) -> None:
    out = tmp_path / "out"
    write_shard(out, "gold", _perfect_rows(gold_path))
    report = tmp_path / "report"
    code = main([str(out), "--gold", gold_path, "--format", "flickr30k", "--json", str(tmp_path / "e.json"),
                 "--report", str(report), "--target-precision", "0.8"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "e.json").read_text())
    for key in ("recall_at_1", "recall_at_5", "recall_at_10", "grounded"):
        assert result[key] == 1.0, key
    assert result["merged_recall_at_1"] < 1.0  # an entity's separate boxes miss its enclosing box
    merged = tmp_path / "merged"
    write_shard(merged, "gold", _perfect_rows(gold_path, merged=True))
    assert main([str(merged), "--gold", gold_path, "--format", "flickr30k", "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["merged_recall_at_1"] == 1.0
    assert result["parser_miss"] == result["teacher_miss"] == 0.0
    assert result["threshold_for_target_precision"] == 0.0  # every stored box is right
    assert result["gold_phrases"] == 270 and result["samples"] == 95
    page = (report / "index.html").read_text()
    assert "<svg" in page and "R@1" in page and "Content-Security-Policy" in page
    assert json.loads((report / "evaluation.json").read_text())["recall_at_1"] == 1.0
    assert "ANY-BOX          1.000" in capsys.readouterr().out


def test_an_s3_output_gives_the_same_numbers(tmp_path, gold_path) -> None:
    out = tmp_path / "out"
    rows = _perfect_rows(gold_path)
    for row in rows[::3]:  # some phrases lose their boxes, so the numbers are not all 1.0
        row["boxes"] = []
    write_shard(out, "gold", rows)
    assert main([str(out), "--gold", gold_path, "--format", "flickr30k", "--json", str(tmp_path / "local.json")]) == 0
    with moto_s3() as bucket:
        upload(out, f"{bucket}/out")
        assert main([f"{bucket}/out", "--gold", gold_path, "--format", "flickr30k", "--json", str(tmp_path / "s3.json")]) == 0
    local, remote = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "s3"))
    assert remote.pop("output") == f"{bucket}/out" and local.pop("output") == str(out)
    assert 0.0 < local["recall_at_1"] < 1.0 and remote == local


def test_bad_input_is_one_sentence_and_exit_2(tmp_path, gold_path, capsys) -> None:
    out = tmp_path / "out"
    rows = _perfect_rows(gold_path)
    for row in rows:  # other images: no key, caption or size in common with the gold
        row.update(key="x" + row["key"], caption=row["caption"] + " (other)", phrases=[], boxes=[])
    write_shard(out, "other", rows)
    assert main([str(out), "--gold", gold_path, "--format", "flickr30k"]) == 2
    assert "the gold is for other images" in capsys.readouterr().err
    assert main([str(tmp_path / "empty"), "--gold", gold_path, "--format", "flickr30k"]) == 2
    assert "no committed shards" in capsys.readouterr().err
    assert main([str(out), "--gold", str(tmp_path / "missing.jsonl"), "--format", "flickr30k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main([str(out), "--gold", gold_path, "--format", "voc"])
    assert exc.value.code == 2
    assert main([str(out), "--gold", gold_path, "--format", "flickr30k", "--run"]) == 2
    assert "--run needs --images" in capsys.readouterr().err


@pytest.mark.slow
def test_run_labels_the_real_flickr30k_images_then_evaluates(tmp_path, gold_path, tiny_teacher, capsys) -> None:
    """One command from gold to numbers: the 19 real photos' 95 captions through the normal job
    (the tiny random teacher: the numbers are meaningless, their bookkeeping is not)."""
    if not IMAGES.exists():
        pytest.skip(f"needs {IMAGES}")
    out = tmp_path / "out"
    code = main([str(out), "--gold", gold_path, "--format", "flickr30k", "--run", "--images", str(IMAGES),
                 "--work", str(tmp_path / "work"), "--json", str(tmp_path / "e.json"), "--target-precision", "0.5",
                 "--", "--teacher", tiny_teacher, "--runner", "inprocess", "--no-progress", "--min-size", "128",
                 "--max-size", "224"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["samples"] == 95 and result["gold_phrases"] == 270
    assert abs(result["parser_miss"] + result["teacher_miss"] + result["grounded"] - 1.0) < 1e-9
    assert result["parser_miss"] < 0.05  # the parser finds the gold phrases of Flickr30k
    assert all(0.0 <= result[k] <= 1.0 for k in ("recall_at_1", "recall_at_5", "recall_at_10", "upper_bound"))
    assert result["recall_at_1"] <= result["recall_at_5"] <= result["recall_at_10"] <= result["upper_bound"]
    assert len(list((out / "_manifests").glob("*.json"))) == 1
