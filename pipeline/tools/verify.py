"""`glip-verify OUTPUT [--input PATTERN] [--json]`: check a labelling output.

Why a separate checker: training trusts the output, so "nothing lost, nothing duplicated" must be
checkable on any output, by users before training and by the fault tests after each fault. It
reads only the published files (and, with --input, the input tars) and trusts nothing the job
says except through what it can recompute: per shard with a manifest it checks the Parquet rows,
the tar, and the manifest's counts and checksums; it flags temp files left at final paths; with
--input it lists input shards without a manifest as unfinished. Exit status 0 only when all pass.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import sys
import tarfile
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import storage
from pipeline.io.layout import OutputLayout, UnreadableManifest
from pipeline.tools.verify_checks import check_against_input, check_manifest, check_rows, check_schema, check_tar


@dataclasses.dataclass
class ShardReport:
    shard: str
    violations: list[str] = dataclasses.field(default_factory=list)
    samples: int = 0
    boxes: int = 0
    config_hash: str | None = None
    damaged_input: str | None = None  # the input shard was truncated or unreadable when labelled

    @property
    def ok(self) -> bool:
        return not self.violations

    def line(self) -> str:
        if not self.ok:
            return f"{self.shard}: FAIL: " + "; ".join(self.violations)
        line = f"{self.shard}: OK ({self.samples} samples, {self.boxes} boxes)"
        if self.damaged_input:
            line += (f" WARNING: damaged input ({self.damaged_input}): the rows cover only the samples before the "
                     "damage; repair the input and rerun the job with --relabel-damaged")
        return line


@dataclasses.dataclass
class VerifyReport:
    output: str
    shards: list[ShardReport] = dataclasses.field(default_factory=list)
    unfinished: dict[str, str] = dataclasses.field(default_factory=dict)
    violations: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.unfinished and all(s.ok for s in self.shards)

    def lines(self) -> list[str]:
        out = [s.line() for s in self.shards]
        out += [f"{shard}: UNFINISHED: {why}" for shard, why in sorted(self.unfinished.items())]
        out += [f"output: FAIL: {v}" for v in self.violations]
        bad = sum(not s.ok for s in self.shards)
        damaged = sum(bool(s.damaged_input) for s in self.shards)
        out.append(f"{'OK' if self.ok else 'FAIL'}: {len(self.shards)} shards checked, {bad} with "
                   f"violations, {len(self.unfinished)} unfinished, {len(self.violations)} other"
                   + (f", {damaged} labelled from a damaged input" if damaged else ""))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "ok": self.ok, "unfinished": self.unfinished,
                "violations": self.violations,
                "shards": [{**dataclasses.asdict(s), "ok": s.ok} for s in self.shards]}


def verify_shard(output: str, shard: str, input_url: str | None = None) -> ShardReport:
    """All per-shard invariants for the shard whose manifest is `_manifests/SHARD.json`."""
    report = ShardReport(shard)
    v = report.violations
    layout = OutputLayout(output)
    try:
        m = layout.read_manifest(shard)
    except UnreadableManifest as exc:
        v.append(f"manifest: unreadable ({exc.__cause__})")
        return report
    if m is None:
        v.append(f"manifest: {layout.manifest(shard)} missing")
        return report
    report.config_hash = m.config_hash
    report.damaged_input = m.damage
    if m.shard != shard:
        v.append(f"manifest: shard {m.shard!r} != file name {shard!r}")
    pq_url, tar_url = layout.parquet(shard), layout.tar(shard)
    for what, entry, expect in (("parquet", m.parquet, layout.parquet_name(shard)), ("tar", m.tar, layout.tar_name(shard))):
        if entry.path != expect:
            v.append(f"manifest: {what} path {entry.path!r} != {expect!r}")
    if not storage.exists(pq_url):
        v.append(f"parquet: {pq_url} missing")
        return report
    data = storage.read_bytes(pq_url)
    if len(data) != m.parquet.size or hashlib.sha256(data).hexdigest() != m.parquet.sha256:
        v.append(f"manifest: parquet size/sha256 do not match {pq_url}")
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        table = pf.read()
    except (pa.ArrowException, OSError) as exc:
        v.append(f"parquet: unreadable ({exc})")
        return report
    v += check_schema(table.schema)
    meta = pf.schema_arrow.metadata or {}
    if meta.get(b"config_hash", b"").decode() != m.config_hash:
        v.append(f"parquet: metadata config_hash {meta.get(b'config_hash')!r} != manifest {m.config_hash!r}")
    if any(s.startswith("parquet: column") for s in v):
        return report
    rows = table.to_pylist()
    report.samples, report.boxes = len(rows), sum(len(r["boxes"] or []) for r in rows)
    v += check_rows(rows, shard)
    if not storage.exists(tar_url):
        v.append(f"tar: {tar_url} missing")
        v += check_manifest(m, rows, 0)
        return report
    try:
        tar_violations, images, tar_samples, sha, size = check_tar(tar_url, rows)
    except (tarfile.TarError, EOFError) as exc:
        v.append(f"tar: unreadable ({exc})")
        return report
    v += tar_violations
    if size != m.tar.size or sha != m.tar.sha256:
        v.append(f"manifest: tar size/sha256 do not match {tar_url}")
    v += check_manifest(m, rows, tar_samples)
    if input_url is not None:
        v += check_against_input(input_url, m, rows, images)
    return report


def _verify_shard_safely(output: str, shard: str, input_url: str | None) -> ShardReport:
    """One unreadable shard (access denied, network down) is a violation, not a crash."""
    try:
        return verify_shard(output, shard, input_url)
    except Exception as exc:
        return ShardReport(shard, [f"error while checking: {type(exc).__name__}: {exc}"])


def stray_temp_files(output: str) -> list[str]:
    """Temp files left at final paths (a crashed publish must not leave them where readers look)."""
    layout = OutputLayout(output)
    return [u for folder in [layout.root, *layout.published_dirs()] for u in storage.list_prefix(folder) if storage.is_temp_name(u)]


def verify_output(output: str, input_pattern: str | None = None, workers: int = 4) -> VerifyReport:
    """Check every shard that has a manifest; with an input pattern, also the unfinished ones."""
    report = VerifyReport(output)
    layout = OutputLayout(output)
    done = layout.committed_shards()
    inputs: dict[str, str] = {}
    if input_pattern is not None:
        from pipeline.stages.inputs import list_shards, shard_id

        inputs = {shard_id(u): u for u in list_shards(input_pattern)}
        for shard in sorted(set(inputs) - set(done)):
            report.unfinished[shard] = "no manifest"
    elif not done:
        report.violations.append(f"no manifests under {layout.manifest_dir}")
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        report.shards = list(pool.map(lambda s: _verify_shard_safely(output, s, inputs.get(s)), done))
    configs = Counter(s.config_hash for s in report.shards if s.config_hash is not None)
    if len(configs) > 1:
        report.violations.append(f"shards made with different configs (config hash: shards): {dict(configs)}")
    report.violations += [f"stray temp file at a final path: {u}" for u in stray_temp_files(output)]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glip-verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="output root (local path or s3://...)")
    parser.add_argument("--input", dest="input_pattern", help="input shards (brace pattern or glob)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--workers", type=int, default=4, help="shards checked in parallel")
    args = parser.parse_args(argv)
    if "://" not in args.output and os.path.isfile(args.output):
        print(f"error: {args.output} is a file; give the output root directory of a labelling run", file=sys.stderr)
        return 2
    try:
        report = verify_output(args.output, args.input_pattern, args.workers)
    except (ValueError, OSError) as exc:  # a bad --input pattern, an unreachable output root
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
