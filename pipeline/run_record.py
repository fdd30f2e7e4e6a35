"""The end of a run: its record at `_runs/RUN_ID.json` (resolved config, versions, totals) and
the summary printed for the user."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import time
from typing import Any, Iterable

import storage
from pipeline.plan import RunPlan, ShardOutcome, missing_shards
from pipeline.stages.inputs import shard_id
from schemas import RunRecord

VERSIONED_PACKAGES = ("torch", "transformers", "ray", "spacy", "pyarrow", "webdataset", "fsspec", "s3fs", "pillow", "numpy")


def package_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def write_run_record(plan: RunPlan, outcomes: Iterable[ShardOutcome], *, finished: bool,
                     placement: dict[str, Any] | None = None) -> RunRecord:
    """Publish the run's record; `placement` is the runner's account of its workers and lost nodes."""
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
        shards_retried={o.shard: o.retried for o in outcomes if o.retried},
        **(placement or {}),
    )
    storage.publish_bytes(plan.layout.run_record(plan.run_id), record.to_json())
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
    for node in record.nodes_lost:
        given_up = [w for w in record.workers if w["state"] == "given up" and (w["node_id"] or "?")[:12] in node]
        lines.append(f"NODE LOST {node}: {len(given_up)} actor(s) there were given up; their shards went to the others")
    for shard, whys in sorted(record.shards_retried.items()):
        lines.append(f"RETRIED shard {shard}: " + "; ".join(why[:160] for why in whys))
    for shard, why in sorted(record.warnings.items()):
        lines.append(f"WARNING shard {shard}: {why}; its rows cover the samples before the damage "
                     "(repair the input and rerun with --relabel-damaged)")
    for shard, why in sorted(record.shards_failed.items()):
        lines.append(f"FAILED shard {shard}: {why}")
    return "\n".join(line for line in lines if line)
