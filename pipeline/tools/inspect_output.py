"""`glip-inspect OUTPUT [--min-score X] [--sql QUERY] [--json]`: look at the labels.

Registers DuckDB views over the committed shards' Parquet and prints the summary a user reads
first. The views (also available to `--sql`):

    samples      one row per sample: every Parquet column, plus num_phrases, num_boxes
    phrases      one row per phrase: key, shard, status, phrase (index), text, start, end
    boxes        one row per stored box: key, shard, width, height, phrase, phrase_text, x0..y1, score
    kept_boxes   boxes with score >= --min-score (the re-threshold view)
    kept_samples samples with num_kept: how many of their boxes pass --min-score

Local outputs are read with DuckDB's read_parquet over the committed files; `s3://` outputs are
read through fsspec into Arrow and registered, since DuckDB's httpfs extension may not be
installable where this runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import duckdb

from pipeline.io.committed import NoCommittedShards, ShardRef, complete_shards, read_table, require_committed_shards

VIEWS = """
CREATE VIEW samples AS SELECT *, len(phrases) AS num_phrases, len(boxes) AS num_boxes FROM raw;
CREATE VIEW phrases AS
  SELECT key, shard, status, phrase, p.text AS text, p.start AS start, p."end" AS "end"
  FROM (SELECT key, shard, status, unnest(phrases) AS p, generate_subscripts(phrases, 1) - 1 AS phrase FROM raw);
CREATE VIEW boxes AS
  SELECT key, shard, width, height, b.phrase AS phrase, phrases[b.phrase + 1].text AS phrase_text,
         b.x0 AS x0, b.y0 AS y0, b.x1 AS x1, b.y1 AS y1, b.score AS score
  FROM (SELECT key, shard, width, height, phrases, unnest(boxes) AS b FROM raw);
CREATE VIEW kept_boxes AS SELECT * FROM boxes WHERE score >= {min_score};
CREATE VIEW kept_samples AS
  SELECT s.*, coalesce(k.num_kept, 0) AS num_kept FROM samples s
  LEFT JOIN (SELECT shard, key, count(*) AS num_kept FROM kept_boxes GROUP BY ALL) k USING (shard, key);
"""


def connect(output: str, min_score: float = 0.0) -> tuple[duckdb.DuckDBPyConnection, list[ShardRef]]:
    """An in-memory DuckDB connection with the views above over the committed shards of `output`."""
    refs = complete_shards(output)
    con = duckdb.connect()
    if refs and all("://" not in ref.parquet_url for ref in refs):
        files = ", ".join("'" + ref.parquet_url.replace("'", "''") + "'" for ref in refs)
        con.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet([{files}], union_by_name = true)")
    else:
        con.register("raw_arrow", read_table(refs))
        con.execute("CREATE VIEW raw AS SELECT * FROM raw_arrow")
    con.execute(VIEWS.format(min_score=float(min_score)))
    return con, refs


def _rows(con: duckdb.DuckDBPyConnection, query: str) -> list[dict[str, Any]]:
    cursor = con.execute(query)
    if cursor.description is None:  # the last statement returns no rows (CREATE, SET, ...)
        return []
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def summary(con: duckdb.DuckDBPyConnection, refs: list[ShardRef], min_score: float, top: int = 15) -> dict[str, Any]:
    """Everything the text report prints, as plain JSON-able values."""
    by_status = {r["status"]: r["n"] for r in _rows(con, "SELECT status, count(*) AS n FROM samples GROUP BY 1 ORDER BY 2 DESC, 1")}
    stats = _rows(con, """
        SELECT count(*) AS samples,
               count(*) FILTER (status = 'ok') AS ok,
               count(*) FILTER (num_kept > 0) AS with_box,
               coalesce(sum(num_kept), 0) AS boxes,
               avg(num_kept) FILTER (status = 'ok') AS mean,
               quantile_cont(num_kept, 0.5) FILTER (status = 'ok') AS p50,
               quantile_cont(num_kept, 0.95) FILTER (status = 'ok') AS p95
        FROM kept_samples""")[0]
    histogram = _rows(con, """
        SELECT least(floor(score * 10), 9) / 10 AS lo, count(*) AS n FROM boxes GROUP BY 1 ORDER BY 1""")
    top_phrases = _rows(con, f"""
        SELECT lower(phrase_text) AS phrase, count(*) AS boxes, count(DISTINCT key) AS samples,
               round(avg(score), 3) AS mean_score
        FROM kept_boxes GROUP BY 1 ORDER BY boxes DESC, phrase LIMIT {int(top)}""")
    never = _rows(con, f"""
        SELECT lower(text) AS phrase, count(*) AS occurrences FROM phrases
        WHERE status = 'ok' AND lower(text) NOT IN (SELECT lower(phrase_text) FROM kept_boxes WHERE phrase_text IS NOT NULL)
        GROUP BY 1 ORDER BY occurrences DESC, phrase LIMIT {int(top)}""")
    counted = {r["shard"]: r for r in _rows(con, """
        SELECT shard, count(*) AS rows, count(*) FILTER (status = 'ok') AS ok, sum(num_kept) AS boxes
        FROM kept_samples GROUP BY 1""")}
    per_shard = [
        {"shard": ref.shard, "rows": counted.get(ref.shard, {}).get("rows", 0), "manifest_samples": ref.manifest.samples,
         "ok": counted.get(ref.shard, {}).get("ok", 0), "boxes": int(counted.get(ref.shard, {}).get("boxes") or 0),
         "damaged_input": ref.manifest.damage}
        for ref in refs
    ]
    samples = stats["samples"]
    return {
        "shards": len(refs),
        "min_score": min_score,
        "samples": samples,
        "by_status": by_status,
        "share_with_box": (stats["with_box"] / samples) if samples else 0.0,
        "share_ok_with_box": (stats["with_box"] / stats["ok"]) if stats["ok"] else 0.0,
        "boxes": int(stats["boxes"]),
        "boxes_per_ok_sample": {k: (float(stats[k]) if stats[k] is not None else None) for k in ("mean", "p50", "p95")},
        "score_histogram": [{"bin": f"[{r['lo']:.1f},{r['lo'] + 0.1:.1f})", "boxes": r["n"]} for r in histogram],
        "top_phrases": top_phrases,
        "never_grounded": never,
        "per_shard": per_shard,
    }


def format_summary(s: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [f"{s['samples']} samples in {s['shards']} committed shards; boxes counted at score >= {s['min_score']}", ""]
    lines.append("samples by status:")
    lines += [f"  {status:<16}{n:>8}  {n / max(1, s['samples']):6.1%}" for status, n in s["by_status"].items()]
    b = s["boxes_per_ok_sample"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines += [
        "",
        f"samples with >= 1 box: {s['share_with_box']:.1%} of all, {s['share_ok_with_box']:.1%} of ok",
        f"boxes: {s['boxes']}   per ok sample: mean {fmt(b['mean'])}  p50 {fmt(b['p50'])}  p95 {fmt(b['p95'])}",
        "",
        "score histogram (all stored boxes):",
    ]
    peak = max([h["boxes"] for h in s["score_histogram"]] or [1])
    lines += [f"  {h['bin']:<10}{h['boxes']:>8}  {'#' * round(30 * h['boxes'] / peak)}" for h in s["score_histogram"]]
    lines += ["", "top phrases (boxes, samples, mean score):"]
    lines += [f"  {p['phrase'][:40]:<42}{p['boxes']:>6}{p['samples']:>6}{p['mean_score']:>8.3f}" for p in s["top_phrases"]]
    lines += ["", "phrases never grounded (occurrences in ok samples):"]
    lines += [f"  {p['phrase'][:40]:<42}{p['occurrences']:>6}" for p in s["never_grounded"]] or ["  (none)"]
    lines += ["", "per shard (rows, manifest samples, ok, boxes):"]
    lines += [f"  {r['shard']:<24}{r['rows']:>7}{r['manifest_samples']:>7}{r['ok']:>7}{r['boxes']:>8}"
              + (f"  damaged input: {r['damaged_input']}" if r["damaged_input"] else "") for r in s["per_shard"]]
    damaged = sum(bool(r["damaged_input"]) for r in s["per_shard"])
    if damaged:
        lines += ["", f"WARNING: {damaged} shard(s) were labelled from a damaged input and cover only the samples before "
                      "the damage; repair the inputs and rerun the job with --relabel-damaged"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glip-inspect", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="output root (local or s3://), brace pattern, or wds/*.tar pattern")
    parser.add_argument("--min-score", type=float, default=0.0, help="re-threshold: count boxes with score >= X (default 0: every stored box)")
    parser.add_argument("--sql", help="run this query over the views instead of the summary")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--top", type=int, default=15, help="rows in the phrase tables (default 15)")
    args = parser.parse_args(argv)
    try:
        require_committed_shards(args.output)
        con, refs = connect(args.output, args.min_score)
    except (NoCommittedShards, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.sql:
        try:  # run once: a statement with side effects must not run twice
            result = _rows(con, args.sql) if args.json else con.sql(args.sql)
        except duckdb.Error as exc:
            print(f"error: the --sql query failed: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(result, default=str, ensure_ascii=False, indent=1))
        elif result is not None:  # None: the last statement returns no rows
            result.show(max_rows=100, max_width=200)
        return 0
    result = summary(con, refs, args.min_score, args.top)
    print(json.dumps(result, default=str, ensure_ascii=False, indent=1) if args.json else format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
