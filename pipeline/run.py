"""Driver logic shared by the Ray and in-process runners: plan, lock, resume, summary.

A shard is done iff its manifest exists and carries this run's config hash (DESIGN.md). Outputs
made with another config, or from another input shard of the same name, are refused (naming the
difference) unless `overwrite` is set. A done shard labelled from a damaged (truncated,
unreadable) input is named at every run and labelled again with `relabel_damaged`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import logging
import os
import time
import uuid
from typing import Any, Iterable

from pipeline import storage
from pipeline.config import ConfigError, LabelConfig, diff_settings
from pipeline.shards import list_shards, shard_id
from pipeline.writer import manifest_path
from schemas import Manifest, RunRecord

log = logging.getLogger(__name__)


class ConfigMismatch(ConfigError):
    """Existing outputs were made with different settings."""


@dataclasses.dataclass
class RunPlan:
    run_id: str
    config: LabelConfig
    config_hash: str
    settings: dict[str, Any]
    shards: list[str]  # every input shard URL
    todo: list[str]  # shard URLs to (re)label
    skipped: dict[str, Manifest]  # shard id -> manifest of a finished shard
    started: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass
class ShardOutcome:
    shard: str
    manifest: Manifest | None = None
    error: str | None = None


def resolve_config(cfg: LabelConfig) -> LabelConfig:
    """Pin what the flags leave open, so the config hash names what really made the outputs:
    the revision of a local checkpoint (new weights at the same path are a new config) and the
    spaCy model that `--spacy-model` unset picks on this machine."""
    from teacher.checkpoints import local_revision

    if cfg.teacher_revision is None and os.path.isdir(cfg.teacher):
        cfg = dataclasses.replace(cfg, teacher_revision=local_revision(cfg.teacher))
    try:
        from parsers.spacy_model import resolve_model_name
    except ImportError:  # a driver without spaCy (its workers have it): keep the flag as given
        log.warning("spaCy is not installed where the driver runs; the config records --spacy-model as given")
        return cfg
    try:
        return dataclasses.replace(cfg, spacy_model=resolve_model_name(cfg.spacy_model))
    except ValueError as exc:
        raise ConfigError(f"--spacy-model: {exc}") from None


def _read_manifest(url: str) -> Manifest | None:
    try:
        return Manifest.from_json(storage.read_bytes(url))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable manifest %s (%s); the shard will be relabelled", url, exc)
        return None


def plan_run(cfg: LabelConfig, run_id: str | None = None) -> RunPlan:
    cfg = resolve_config(cfg)
    config_hash = cfg.config_hash()
    settings = cfg.hashed_settings()
    shards = list_shards(cfg.input)
    todo: list[str] = []
    skipped: dict[str, Manifest] = {}
    mismatched: dict[str, list[str]] = {}
    existing = {shard_id(u) for u in storage.list_prefix(storage.join(cfg.output, "_manifests"), ".json")}
    for url in shards:
        sid = shard_id(url)
        manifest = _read_manifest(manifest_path(cfg.output, sid)) if sid in existing else None
        if manifest is None:
            todo.append(url)
        elif manifest.input_uri != url:
            mismatched[sid] = [f"input: {manifest.input_uri!r} -> {url!r}"]
            todo.append(url)
        elif manifest.config_hash != config_hash:
            mismatched[sid] = diff_settings(manifest.settings, settings)
            todo.append(url)
        elif manifest.damage and cfg.relabel_damaged:
            todo.append(url)
        else:
            skipped[sid] = manifest
    if mismatched and not cfg.overwrite:
        sid, first = next(iter(mismatched.items()))
        changes = "; ".join(first) or "settings not recorded"
        raise ConfigMismatch(
            f"output {cfg.output} already holds {len(mismatched)} shard(s) labelled from another input or with "
            f"other settings (shard {sid}: {changes}); use another --output, or pass --overwrite to relabel them"
        )
    return RunPlan(run_id or new_run_id(), cfg, config_hash, settings, shards, todo, skipped)


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def clean_temp_files(output: str) -> int:
    """Remove temporary files a killed run left at the output (only while holding the lock)."""
    removed = 0
    for sub in ("parquet", "wds", "_manifests"):
        for url in storage.list_prefix(storage.join(output, sub)):
            if storage.is_temp_name(url):
                storage.remove(url)
                removed += 1
    return removed


def package_versions() -> dict[str, str]:
    names = ["torch", "transformers", "ray", "spacy", "pyarrow", "webdataset", "fsspec", "s3fs", "pillow", "numpy"]
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def missing_shards(plan: RunPlan, outcomes: Iterable[ShardOutcome]) -> list[str]:
    """URLs of the shards to label that have no outcome (labelled or failed) yet."""
    seen = {o.shard for o in outcomes}
    return [url for url in plan.todo if shard_id(url) not in seen]


def write_run_record(plan: RunPlan, outcomes: Iterable[ShardOutcome], *, finished: bool) -> RunRecord:
    outcomes = list(outcomes)
    counts: dict[str, int] = {}
    boxes = samples = 0
    manifests = [o.manifest for o in outcomes if o.manifest] + list(plan.skipped.values())
    for m in manifests:
        samples += m.samples
        boxes += m.boxes
        for k, v in m.status_counts.items():
            counts[k] = counts.get(k, 0) + v
    failed = {o.shard: o.error or "unknown error" for o in outcomes if o.manifest is None}
    if not finished:
        failed.update({shard_id(u): "not finished" for u in missing_shards(plan, outcomes)})
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    record = RunRecord(
        run_id=plan.run_id,
        config=plan.config.to_dict(),
        config_hash=plan.config_hash,
        versions=package_versions(),
        started_at=dt.datetime.fromtimestamp(plan.started, dt.timezone.utc).isoformat(timespec="seconds"),
        finished_at=now if finished else "",
        shards_total=len(plan.shards),
        shards_done=sum(1 for o in outcomes if o.manifest),
        shards_skipped=len(plan.skipped),
        shards_failed=failed,
        status_counts=counts,
        boxes=boxes,
        samples=samples,
        seconds=round(time.time() - plan.started, 3),
        warnings={m.shard: m.damage for m in manifests if m.damage},
    )
    storage.publish_bytes(storage.join(plan.config.output, "_runs", f"{plan.run_id}.json"), record.to_json())
    return record


def summary_text(record: RunRecord, new_samples: int) -> str:
    ok = record.status_counts.get("ok", 0)
    lines = [
        f"run {record.run_id}: {record.shards_done} shard(s) labelled, {record.shards_skipped} skipped (already done), "
        f"{len(record.shards_failed)} failed, of {record.shards_total}",
        "samples by status: " + (", ".join(f"{k}={v}" for k, v in sorted(record.status_counts.items())) or "none"),
        f"boxes: {record.boxes} ({record.boxes / ok:.2f} per ok sample)" if ok else f"boxes: {record.boxes}",
        f"throughput: {new_samples / record.seconds:.1f} samples/s over {record.seconds:.1f}s" if record.seconds > 0 else "",
    ]
    for shard, why in sorted(record.warnings.items()):
        lines.append(f"WARNING shard {shard}: {why}; its rows cover the samples before the damage "
                     "(repair the input and rerun with --relabel-damaged)")
    for shard, why in sorted(record.shards_failed.items()):
        lines.append(f"FAILED shard {shard}: {why}")
    return "\n".join(line for line in lines if line)
