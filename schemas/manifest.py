"""The per-shard manifest (the commit marker, written last) and the per-run record."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from schemas.rows import SCHEMA_VERSION


@dataclasses.dataclass
class OutputFile:
    path: str  # relative to the output root
    size: int
    sha256: str


@dataclasses.dataclass
class Manifest:
    shard: str
    input_uri: str
    config_hash: str
    teacher_id: str
    teacher_revision: str
    samples: int
    status_counts: dict[str, int]
    boxes: int
    parquet: OutputFile
    tar: OutputFile
    tar_samples: int
    timings: dict[str, float]
    run_id: str
    created_at: str
    schema_version: str = SCHEMA_VERSION
    truncated_input: bool = False
    input_error: str | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    teacher_input: dict[str, Any] = dataclasses.field(default_factory=dict)  # resize rule, sizes, fast decoding

    @property
    def damage(self) -> str | None:
        """Why the input shard was incomplete when it was labelled (truncated, unreadable), or None."""
        return (self.input_error or "input truncated") if self.truncated_input or self.input_error else None

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> "Manifest":
        raw: dict[str, Any] = json.loads(data)
        raw["parquet"] = OutputFile(**raw["parquet"])
        raw["tar"] = OutputFile(**raw["tar"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclasses.dataclass
class RunRecord:
    run_id: str
    config: dict[str, Any]
    config_hash: str
    versions: dict[str, str]
    started_at: str
    finished_at: str
    shards_total: int
    shards_done: int
    shards_skipped: int
    shards_failed: dict[str, str]
    status_counts: dict[str, int]
    boxes: int
    samples: int
    seconds: float
    schema_version: str = SCHEMA_VERSION
    warnings: dict[str, str] = dataclasses.field(default_factory=dict)
    shards_retried: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # shard -> why attempts failed
    workers: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # Ray: kind, node_ip, node_id, pid, state
    nodes_lost: list[str] = dataclasses.field(default_factory=list)  # Ray nodes that died during the run

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True).encode("utf-8")
