"""Checks behind `pipeline.tools.verify`: Parquet rows, the tar, the manifest, and the input shard.

Each function returns human-readable violations (an empty list when the part is sound).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import tarfile
from collections import Counter
from typing import IO, Any

import pyarrow as pa

import storage
from pipeline.stages.reader import ReadReport, iter_samples, split_member
from schemas.manifest import Manifest
from schemas.rows import DECODED_STATUSES, RESCORED_BOX_TYPE, ROW_SCHEMA, Status, row_to_json_record

EPS = 1e-3  # slack for float32 box coordinates at the frame edge
MAX_LISTED = 5  # offending keys named per violation kind
_DECODED = frozenset(s.value for s in DECODED_STATUSES)
_STATUSES = frozenset(Status.values())


def _some(keys: Any) -> str:
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:MAX_LISTED])
    return shown + (f" (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


class _HashingReader(io.RawIOBase):
    """Wraps a binary stream, hashing and counting what is read (one pass over a tar)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _json_equal(a: Any, b: Any) -> bool:
    """Equality that allows float32 rounding (the Parquet stores float32, JSON may hold doubles)."""
    if isinstance(a, float) or isinstance(b, float):
        return (isinstance(a, (int, float)) and isinstance(b, (int, float))
                and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return a == b


def check_schema(schema: pa.Schema) -> list[str]:
    """Every column of ROW_SCHEMA present with its type (extra columns are allowed, and the boxes
    may carry the rescorer's extra fields: `schemas.rows.COLUMN_GROUPS`)."""
    out = []
    for field in ROW_SCHEMA:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            out.append(f"parquet: column {field.name!r} missing")
            continue
        found = schema.field(idx).type
        if field.name == "boxes" and found.equals(pa.list_(RESCORED_BOX_TYPE)):
            continue
        if not found.equals(field.type):
            out.append(f"parquet: column {field.name!r} has type {found}, expected {field.type}")
    return out


def check_rows(rows: list[dict[str, Any]], shard: str) -> list[str]:
    """The row invariants (ARCHITECTURE.md, "Contracts": one row per sample, unique keys, known
    statuses, exact spans, boxes in the frame), one message per kind."""
    bad: dict[str, list[str]] = {}

    def flag(kind: str, key: str) -> None:
        bad.setdefault(kind, []).append(key)

    counts = Counter(r["key"] for r in rows)
    for key, n in counts.items():
        if n > 1:
            flag("duplicate key", key)
    for r in rows:
        key, status = r["key"], r["status"]
        if r["shard"] != shard:
            flag(f"shard column is not {shard!r}", key)
        if status not in _STATUSES:
            flag("unknown status", key)
        if (r["error"] is None) != (status == Status.OK.value):
            flag("error must be set exactly when status is not ok", key)
        caption, phrases = r["caption"] or "", r["phrases"] or []
        for p in phrases:
            if not (0 <= p["start"] <= p["end"] <= len(caption)) or caption[p["start"]:p["end"]] != p["text"]:
                flag("phrase span does not match caption[start:end]", key)
                break
        w, h = r["width"], r["height"]
        for b in r["boxes"] or []:
            if not 0 <= b["phrase"] < len(phrases):
                flag("box phrase index out of range", key)
                break
            if w is None or h is None:
                flag("boxes without width/height", key)
                break
            coords = [b["x0"], b["y0"], b["x1"], b["y1"]]
            if not all(math.isfinite(c) for c in coords) or not (
                -EPS <= b["x0"] <= b["x1"] + EPS and b["x1"] <= w + EPS
                and -EPS <= b["y0"] <= b["y1"] + EPS and b["y1"] <= h + EPS):
                flag("box outside the width x height frame", key)
                break
            if not (math.isfinite(b["score"]) and 0.0 <= b["score"] <= 1.0):
                flag("score outside [0, 1]", key)
                break
    for r in rows:
        for kind in _added_column_violations(r):
            flag(kind, r["key"])
    return [f"parquet: {kind}: {_some(keys)}" for kind, keys in bad.items()]


def _added_column_violations(r: dict[str, Any]) -> list[str]:
    """The invariants of the columns settings add: referring expressions and dropped phrases are
    exact caption spans, an expression contains its head phrase and no other kept one, a box's
    `rescored` is sqrt(score * clip_score)."""
    caption, phrases, out = r["caption"] or "", r["phrases"] or [], []

    def exact(item: dict[str, Any]) -> bool:
        return 0 <= item["start"] <= item["end"] <= len(caption) and caption[item["start"]:item["end"]] == item["text"]

    refs = r.get("ref_exps") or []
    if not all(exact(x) for x in refs + list(r.get("dropped_phrases") or [])):
        out.append("ref_exps or dropped_phrases span does not match caption[start:end]")
    for x in refs:
        head = phrases[x["phrase"]] if 0 <= x["phrase"] < len(phrases) else None
        if head is None or not x["start"] <= head["start"] <= head["end"] <= x["end"]:
            out.append("referring expression does not contain its head phrase")
            break
    spans = sorted((x["start"], x["end"]) for x in refs)
    if any(a_end > b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])):
        out.append("referring expressions overlap or nest")
    for b in r["boxes"] or []:
        if b.get("clip_score") is not None and not math.isclose(b["rescored"], math.sqrt(b["score"] * b["clip_score"]),
                                                                 rel_tol=1e-4, abs_tol=1e-5):
            out.append("rescored is not sqrt(score * clip_score)")
            break
    return out


def check_tar(url: str, rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, str], int, str, int]:
    """Invariant 2: exactly the decoded rows, each as image + txt + json equal to the row.

    Returns (violations, key -> sha256 of the image bytes, tar samples, sha256, size).
    """
    out: list[str] = []
    expected: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["status"] in _DECODED:
            try:
                expected[storage.safe_member_name(r["key"])] = r
            except ValueError:
                out.append(f"tar: row key {r['key']!r} cannot name a member")
    seen: dict[str, set[str]] = {}
    images: dict[str, str] = {}
    bad: dict[str, list[str]] = {}
    with storage.open_read(url) as raw:
        reader = _HashingReader(raw)
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                name = member.name
                if not member.isfile():
                    bad.setdefault("non-file member", []).append(name)
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                key, ext = split_member(name)
                row = expected.get(key)
                if row is None:
                    bad.setdefault("member without a decoded row", []).append(name)
                    continue
                if ext in seen.setdefault(key, set()):
                    bad.setdefault("duplicate member", []).append(name)
                seen[key].add(ext)
                image_ext = (row.get("image_ext") or "").lstrip(".")
                if ext == "json":
                    want = json.loads(row_to_json_record(row))
                    try:
                        got = json.loads(data)
                    except ValueError:
                        got = None
                    if not isinstance(got, dict) or not all(_json_equal(got.get(k), v) for k, v in want.items()):
                        bad.setdefault("json record differs from the parquet row", []).append(row["key"])
                elif ext == "txt":
                    if data.decode("utf-8", "replace") != row["caption"]:
                        bad.setdefault("txt differs from the caption", []).append(row["key"])
                elif ext == image_ext:
                    images[row["key"]] = hashlib.sha256(data).hexdigest()
                else:
                    bad.setdefault("unexpected member", []).append(name)
        reader.drain()
    for key, row in expected.items():
        image_ext = (row.get("image_ext") or "").lstrip(".")
        missing = {image_ext or "<image_ext is null>", "txt", "json"} - seen.get(key, set())
        for ext in sorted(missing):
            bad.setdefault("missing member", []).append(f"{key}.{ext}")
    out += [f"tar: {kind}: {_some(names)}" for kind, names in bad.items()]
    return out, images, len(seen), reader.sha.hexdigest(), reader.size


def check_manifest(m: Manifest, rows: list[dict[str, Any]], tar_samples: int) -> list[str]:
    """Invariant 3, counts half: the manifest says what the files hold."""
    out = []
    statuses = Counter(r["status"] for r in rows)
    boxes = sum(len(r["boxes"] or []) for r in rows)
    decoded = sum(statuses[s] for s in _DECODED)
    if m.samples != len(rows):
        out.append(f"manifest: samples {m.samples} != {len(rows)} parquet rows")
    if {k: v for k, v in m.status_counts.items() if v} != dict(statuses):
        out.append(f"manifest: status_counts {m.status_counts} != parquet {dict(statuses)}")
    if m.boxes != boxes:
        out.append(f"manifest: boxes {m.boxes} != {boxes} in parquet")
    if m.tar_samples != decoded or tar_samples != decoded:
        out.append(f"manifest: tar_samples {m.tar_samples}, tar holds {tar_samples}, decoded rows {decoded}")
    return out


@dataclasses.dataclass
class InputShard:
    """What verify needs from an input tar: image hashes per key (first occurrence), how often
    each key occurs as a sample (consecutive members with one key form a sample), read error."""

    hashes: dict[str, dict[str, str]]
    occurrences: Counter[str]
    error: str | None


def read_input(url: str) -> InputShard:
    """Stream an input tar once; a truncated/corrupt tar yields what was read and the error.

    Samples are what the job's reader (`pipeline.stages.reader.iter_samples`) makes of the tar: one
    definition of a sample for the job and for this check.
    """
    inp = InputShard({}, Counter(), None)
    report = ReadReport()
    try:
        for sample in iter_samples(url, report):
            inp.occurrences[sample.source_key] += 1
            if sample.duplicate_of is None and sample.image is not None and sample.image_ext:
                inp.hashes[sample.key] = {sample.image_ext: hashlib.sha256(sample.image).hexdigest()}
    except OSError as exc:
        inp.error = f"{type(exc).__name__}: {exc}"
    if report.truncated:
        inp.error = report.error
    return inp


def check_against_input(input_url: str, m: Manifest, rows: list[dict[str, Any]],
                        images: dict[str, str]) -> list[str]:
    """Parquet keys are the input's keys (one row per sample); tar images are the input's bytes.

    A key that occurs several times in the input has one row under its own key, and one row with
    status duplicate_key per extra occurrence (under whatever derived key the writer chose).
    """
    out = []
    inp = read_input(input_url)
    dup_rows = sum(r["status"] == Status.DUPLICATE_KEY.value for r in rows)
    got = {r["key"] for r in rows if r["status"] != Status.DUPLICATE_KEY.value}
    missing = set(inp.occurrences) - got
    if inp.error is not None:
        if not m.truncated_input:
            out.append(f"input: {input_url} is unreadable ({inp.error}) but the manifest does not say truncated_input")
        missing.discard(next(reversed(inp.occurrences), None))
    extra = got - set(inp.occurrences)
    if missing:
        out.append(f"input: keys missing from parquet: {_some(sorted(missing))}")
    if extra:
        out.append(f"input: parquet keys not in the input: {_some(sorted(extra))}")
    extra_occurrences = sum(n - 1 for n in inp.occurrences.values())
    if inp.error is None and dup_rows != extra_occurrences:
        out.append(f"input: {extra_occurrences} repeated sample(s) in the input but {dup_rows} duplicate_key row(s)")
    differ = []
    for r in rows:
        digest = images.get(r["key"])
        if digest is None or r["status"] == Status.DUPLICATE_KEY.value:
            continue
        ext = (r.get("image_ext") or "").lstrip(".").lower()
        if inp.hashes.get(r["key"], {}).get(ext) != digest:
            differ.append(r["key"])
    if differ:
        out.append(f"tar: image bytes differ from the input: {_some(differ)}")
    return out
