"""Find the committed output shards of a labelling run and read their files, local or `s3://`.

Every reader (training loader, inspection, gallery, exports, evaluation) goes through here so
that they agree on one rule: a shard exists for readers only once its manifest exists. A job that
is still running may have published some Parquet/tar files whose manifest is not written yet;
those are invisible here, so a reader never mixes a committed shard with one that may be
rewritten.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any, Iterable, Iterator

import braceexpand
import pyarrow as pa
import pyarrow.parquet as pq

import storage
from pipeline.io.layout import TAR_DIR, OutputLayout
from schemas import Manifest
from schemas.rows import IMAGE_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class ShardRef:
    """One committed output shard: where its files are, and its manifest."""

    shard: str
    root: str
    manifest: Manifest | None  # None when listed with read_manifests=False

    @property
    def parquet_url(self) -> str:
        return OutputLayout(self.root).parquet(self.shard)

    @property
    def tar_url(self) -> str:
        return OutputLayout(self.root).tar(self.shard)

    @property
    def manifest_url(self) -> str:
        return OutputLayout(self.root).manifest(self.shard)


def _shards_under_root(root: str, read_manifests: bool) -> list[ShardRef]:
    layout = OutputLayout(root)
    refs = []
    for shard in layout.committed_shards():
        manifest = layout.read_manifest(shard) if read_manifests else None
        if read_manifests and manifest is None:
            continue
        refs.append(ShardRef(shard=shard, root=layout.root, manifest=manifest))
    return refs


def _shard_from_tar(tar_url: str, read_manifests: bool) -> ShardRef | None:
    """`ROOT/wds/SHARD.tar` -> its ShardRef when `ROOT/_manifests/SHARD.json` exists."""
    wds_dir, name = posixpath.split(tar_url)
    root = posixpath.dirname(wds_dir)
    if posixpath.basename(wds_dir) != TAR_DIR or not name.endswith(".tar"):
        raise ValueError(f"{tar_url!r} is not an output tar (expected ROOT/wds/SHARD.tar)")
    layout, shard = OutputLayout(root), name[: -len(".tar")]
    if not read_manifests:
        return ShardRef(shard=shard, root=layout.root, manifest=None) if storage.exists(layout.manifest(shard)) else None
    manifest = layout.read_manifest(shard)
    return None if manifest is None else ShardRef(shard=shard, root=layout.root, manifest=manifest)


def _expanded(spec: str | Iterable[str]) -> Iterator[str]:
    for item in [spec] if isinstance(spec, str) else list(spec):
        yield from braceexpand.braceexpand(item)


def complete_shards(spec: str | Iterable[str], read_manifests: bool = True) -> list[ShardRef]:
    """The committed shards named by `spec`.

    `spec` is an output root (`/data/out`, `s3://bucket/out`), a brace pattern of roots
    (`s3://b/out{1,2}`), or a brace/glob pattern of output tars (`out/wds/{00000..00099}.tar`,
    `out/wds/*.tar`); or a list of those. Tars without a manifest are skipped silently, which is
    what lets a trainer follow a job that is still writing. read_manifests=False only checks that
    the manifests exist (one listing, no reads): what the training loader does every epoch.
    """
    refs: list[ShardRef] = []
    for url in _expanded(spec):
        if not url.endswith(".tar"):
            refs.extend(_shards_under_root(url, read_manifests))
            continue
        tars = storage.glob(url) if any(c in url for c in "*?[") else [url]
        refs.extend(ref for ref in (_shard_from_tar(t, read_manifests) for t in tars) if ref is not None)
    return list({(ref.root, ref.shard): ref for ref in refs}.values())


def why_no_shards(spec: str | Iterable[str]) -> str:
    """Why `complete_shards(spec)` is empty: for each root or tar pattern (the first three),
    whether its folder exists and, if it does, that no shard there has a manifest."""
    reasons = []
    for url in _expanded(spec):
        root = posixpath.dirname(posixpath.dirname(url)) if url.endswith(".tar") else url
        if not storage.exists(root):
            reasons.append(f"{root} does not exist")
        elif url.endswith(".tar"):
            reasons.append(f"no tar matching {url} has a manifest in {OutputLayout(root).manifest_dir}")
        else:
            reasons.append(f"{url} has no committed shard yet (no {OutputLayout(url).manifest('*')})")
    if not reasons:
        return "no output root was given"
    return "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")


def read_table(refs: Iterable[ShardRef], columns: list[str] | None = None) -> pa.Table:
    """The Parquet rows of the given shards as one Arrow table (through fsspec, so `s3://` works)."""
    tables = [pq.read_table(pa.BufferReader(storage.read_bytes(ref.parquet_url)), columns=columns) for ref in refs]
    if not tables:
        from schemas import ROW_SCHEMA

        schema = ROW_SCHEMA if columns is None else pa.schema([ROW_SCHEMA.field(c) for c in columns])
        return schema.empty_table()
    return pa.concat_tables(tables, promote_options="default")


def iter_tar_members(url: str) -> Iterator[dict[str, bytes | str]]:
    """Samples of a WebDataset tar as `{"__key__": KEY, "jpg": bytes, "json": bytes, ...}`.

    Uses WebDataset's own tar streaming and key grouping, so the member naming rules
    (`KEY.ext`, multi-dot extensions) are exactly the ones WebDataset writers follow.
    """
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    with storage.open_read(url) as stream:
        members = ({**member, "__url__": url} for member in tar_file_iterator(stream))
        yield from group_by_keys(members)


def image_extension(sample: dict[str, Any]) -> str | None:
    """The member name of a sample's image (from `iter_tar_members`), None when it has none."""
    return next((e for e in sample if e.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS), None)


class NoCommittedShards(ValueError):
    """An output path that holds no finished shard: most likely a typo in the path."""


def require_committed_shards(spec: Any) -> list[ShardRef]:
    """`complete_shards`, but an empty result is an error naming the path."""
    refs = complete_shards(spec)
    if not refs:
        raise NoCommittedShards(
            f"no committed shards under {spec} (no _manifests/*.json beside parquet/ and wds/); check the path"
        )
    return refs
