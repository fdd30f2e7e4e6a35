"""`python -m pipeline.tools.inspect_output`: the views and the summary agree with the rows written."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.tools.inspect_output import connect, main, summary
from tests.pipeline.output_fixture import NEVER_GROUNDED, build_output, committed_rows, moto_s3, upload
from tests.project import ROOT


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("out")
    return root, build_output(root, shards=3, samples=20, seed=5)


def expected(rows: list[dict], min_score: float) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    kept = [[b for b in r["boxes"] if b["score"] >= min_score] for r in ok]
    per_sample = [len(k) for k in kept]
    phrases = Counter(r["phrases"][b["phrase"]]["text"].lower() for r, k in zip(ok, kept) for b in k)
    return {
        "by_status": Counter(r["status"] for r in rows),
        "boxes": sum(per_sample),
        "with_box": sum(n > 0 for n in per_sample),
        "mean": statistics.mean(per_sample),
        "p50": float(np.quantile(per_sample, 0.5)),
        "p95": float(np.quantile(per_sample, 0.95)),
        "phrases": phrases,
    }


@pytest.mark.parametrize("min_score", [0.0, 0.5])
def test_summary_matches_rows(output, min_score: float) -> None:
    root, built = output
    rows = committed_rows(built)
    want = expected(rows, min_score)
    con, refs = connect(str(root), min_score)
    got = summary(con, refs, min_score, top=100)
    assert got["samples"] == len(rows) == 60
    assert got["by_status"] == dict(want["by_status"])
    assert got["boxes"] == want["boxes"]
    assert got["share_with_box"] == pytest.approx(want["with_box"] / len(rows))
    assert got["boxes_per_ok_sample"]["mean"] == pytest.approx(want["mean"])
    assert got["boxes_per_ok_sample"]["p50"] == pytest.approx(want["p50"])
    assert got["boxes_per_ok_sample"]["p95"] == pytest.approx(want["p95"])
    assert {p["phrase"]: p["boxes"] for p in got["top_phrases"]} == dict(want["phrases"])
    assert NEVER_GROUNDED in {p["phrase"] for p in got["never_grounded"]}
    assert not {p["phrase"] for p in got["never_grounded"]} & set(want["phrases"])
    assert [(s["shard"], s["rows"], s["manifest_samples"]) for s in got["per_shard"]] == [
        ("00000", 20, 20), ("00001", 20, 20), ("00002", 20, 20)]
    all_boxes = sum(len(r["boxes"]) for r in rows)
    assert sum(h["boxes"] for h in got["score_histogram"]) == all_boxes


def test_views(output) -> None:
    root, built = output
    rows = {r["key"]: r for r in committed_rows(built)}
    con, _ = connect(str(root), 0.25)
    for key, phrase, text, score in con.execute("SELECT key, phrase, phrase_text, score FROM boxes").fetchall():
        assert rows[key]["phrases"][phrase]["text"] == text
    (kept,) = con.execute("SELECT count(*) FROM kept_boxes").fetchone()
    assert kept == sum(b["score"] >= 0.25 for r in rows.values() for b in r["boxes"])
    for key, start, end, text in con.execute('SELECT key, start, "end", text FROM phrases').fetchall():
        assert rows[key]["caption"][start:end] == text
    assert con.execute("SELECT count(DISTINCT key) FROM samples").fetchone()[0] == len(rows)


def test_cli_sql_json_and_text(output, capsys) -> None:
    root, built = output
    assert main([str(root), "--json", "--sql", "SELECT status, count(*) AS n FROM samples GROUP BY 1 ORDER BY 1"]) == 0
    got = {r["status"]: r["n"] for r in json.loads(capsys.readouterr().out)}
    assert got == dict(Counter(r["status"] for r in committed_rows(built)))
    assert main([str(root), "--min-score", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "samples by status:" in text and "phrases never grounded" in text and "00002" in text


def test_s3_output_gives_the_same_summary(output) -> None:
    root, _ = output
    con, refs = connect(str(root), 0.3)
    local = summary(con, refs, 0.3)
    with moto_s3() as bucket:
        upload(root, f"{bucket}/out")
        con, refs = connect(f"{bucket}/out", 0.3)
        remote = summary(con, refs, 0.3)
    assert remote == local


def test_module_entry_point(output) -> None:
    import subprocess
    import sys

    root, _ = output
    result = subprocess.run([sys.executable, "-m", "pipeline.tools.inspect_output", str(root), "--json"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["samples"] == 60
