"""Plan a run: which input shards to label, which are done, and what every manifest records.

A shard is done iff its manifest exists and carries this run's config hash. Outputs made with
another config, or from another input shard of the same name, are refused (naming the
difference) unless `overwrite` is set. A done shard labelled from a damaged (truncated,
unreadable) input is named at every run and labelled again with `relabel_damaged`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import time
import uuid
from typing import Any, Iterable

import storage
from pipeline.config import ConfigError, LabelConfig, diff_settings
from pipeline.io.layout import OutputLayout, UnreadableManifest
from pipeline.stages.inputs import list_shards, shard_id
from pipeline.stages.write import ShardCommit
from schemas import Manifest

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

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.config.output)

    def commit(self, teacher_id: str, teacher_revision: str | None) -> ShardCommit:
        """What each shard's manifest records about this run and its teacher."""
        return ShardCommit(output=self.config.output, config_hash=self.config_hash, settings=self.settings,
                           teacher_id=teacher_id, teacher_revision=self.config.labels.teacher_revision or teacher_revision or "unknown",
                           run_id=self.run_id)


@dataclasses.dataclass
class ShardOutcome:
    shard: str
    manifest: Manifest | None = None
    error: str | None = None
    retried: list[str] = dataclasses.field(default_factory=list)  # why earlier attempts of this run failed


def resolve_config(cfg: LabelConfig) -> LabelConfig:
    """Pin what the flags leave open, so the config hash names what really made the outputs:
    the revision of a local teacher or rescorer checkpoint (new weights at the same path are a new
    config) and the spaCy model that `--spacy-model` unset picks on this machine."""
    from teacher.checkpoints import local_revision

    if cfg.labels.teacher_revision is None and os.path.isdir(cfg.labels.teacher):
        cfg = cfg.with_labels(teacher_revision=local_revision(cfg.labels.teacher))
    rescorer = cfg.labels.rescorer
    if rescorer and cfg.labels.rescorer_revision is None and os.path.isdir(rescorer):
        cfg = cfg.with_labels(rescorer_revision=local_revision(rescorer))
    try:
        from parsers.spacy_model import resolve_model_name
    except ImportError:  # a driver without spaCy (its workers have it): keep the flag as given
        log.warning("spaCy is not installed where the driver runs; the config records --spacy-model as given")
        return cfg
    try:
        return cfg.with_labels(spacy_model=resolve_model_name(cfg.labels.spacy_model))
    except ValueError as exc:
        raise ConfigError(f"--spacy-model: {exc}") from None


def _existing_manifest(layout: OutputLayout, shard: str) -> Manifest | None:
    try:
        return layout.read_manifest(shard)
    except UnreadableManifest as exc:
        log.warning("ignoring %s; the shard will be relabelled", exc)
        return None


def plan_run(cfg: LabelConfig, run_id: str | None = None) -> RunPlan:
    cfg = resolve_config(cfg)
    config_hash = cfg.config_hash()
    settings = cfg.hashed_settings()
    shards = list_shards(cfg.input)
    layout = OutputLayout(cfg.output)
    todo: list[str] = []
    skipped: dict[str, Manifest] = {}
    mismatched: dict[str, list[str]] = {}
    existing = set(layout.committed_shards())
    for url in shards:
        sid = shard_id(url)
        manifest = _existing_manifest(layout, sid) if sid in existing else None
        if manifest is None:
            todo.append(url)
        elif manifest.input_uri != url:
            mismatched[sid] = [f"input: {manifest.input_uri!r} -> {url!r}"]
            todo.append(url)
        elif manifest.config_hash != config_hash:
            mismatched[sid] = diff_settings(manifest.settings, settings)
            todo.append(url)
        elif manifest.damage and cfg.policy.relabel_damaged:
            todo.append(url)
        else:
            skipped[sid] = manifest
    if mismatched and not cfg.policy.overwrite:
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
    for folder in OutputLayout(output).published_dirs():
        for url in storage.list_prefix(folder):
            if storage.is_temp_name(url):
                storage.remove(url)
                removed += 1
    return removed


def missing_shards(plan: RunPlan, outcomes: Iterable[ShardOutcome]) -> list[str]:
    """URLs of the shards to label that have no outcome (labelled or failed) yet."""
    seen = {o.shard for o in outcomes}
    return [url for url in plan.todo if shard_id(url) not in seen]
