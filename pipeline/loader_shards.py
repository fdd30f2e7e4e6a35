"""Find the complete output shards of a labelling run and open their files, local or `s3://`.

Every reader (training loader, inspection, gallery, exports) goes through here so that they agree
on one rule from DESIGN.md: a shard exists for readers only once its manifest exists. A job that is
still running may have published some Parquet/tar files whose manifest is not written yet; those
are invisible here, so a reader never mixes a committed shard with one that may be rewritten.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import IO, Any, Iterable, Iterator

import braceexpand
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.images import IMAGE_EXTENSIONS
from schemas import Manifest


@dataclasses.dataclass(frozen=True)
class ShardRef:
    """One committed output shard: where its files are, and its manifest."""

    shard: str
    root: str
    manifest: Manifest | None  # None when listed with read_manifests=False

    @property
    def parquet_url(self) -> str:
        return join(self.root, "parquet", f"{self.shard}.parquet")

    @property
    def tar_url(self) -> str:
        return join(self.root, "wds", f"{self.shard}.tar")

    @property
    def manifest_url(self) -> str:
        return join(self.root, "_manifests", f"{self.shard}.json")


def join(root: str, *parts: str) -> str:
    """Join URL-ish paths with `/` whatever the platform (s3 keys are always `/`)."""
    return posixpath.join(root.rstrip("/"), *parts)


def _fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(url)


def _unstrip(fs: fsspec.AbstractFileSystem, path: str, like: str) -> str:
    """Give `path` back the protocol of `like` (fsspec strips `s3://` from listings)."""
    return fs.unstrip_protocol(path) if "://" in like else path


def _read_manifest(fs: fsspec.AbstractFileSystem, path: str) -> Manifest | None:
    try:
        with fs.open(path, "rb") as f:
            return Manifest.from_json(f.read())
    except FileNotFoundError:
        return None


def _shards_under_root(root: str, read_manifests: bool) -> list[ShardRef]:
    fs, path = _fs(root)
    fs.invalidate_cache()  # listings are cached per filesystem; a running job adds manifests
    refs = []
    for manifest_path in sorted(fs.glob(join(path, "_manifests", "*.json"))):
        manifest = _read_manifest(fs, manifest_path) if read_manifests else None
        if read_manifests and manifest is None:
            continue
        shard = posixpath.basename(manifest_path)[: -len(".json")]
        refs.append(ShardRef(shard=shard, root=root.rstrip("/"), manifest=manifest))
    return refs


def _shard_from_tar(tar_url: str, read_manifests: bool) -> ShardRef | None:
    """`ROOT/wds/SHARD.tar` -> its ShardRef when `ROOT/_manifests/SHARD.json` exists."""
    wds_dir, name = posixpath.split(tar_url)
    root = posixpath.dirname(wds_dir)
    if posixpath.basename(wds_dir) != "wds" or not name.endswith(".tar"):
        raise ValueError(f"{tar_url!r} is not an output tar (expected ROOT/wds/SHARD.tar)")
    shard = name[: -len(".tar")]
    fs, path = _fs(join(root, "_manifests", f"{shard}.json"))
    if not read_manifests:
        fs.invalidate_cache()
        return ShardRef(shard=shard, root=root, manifest=None) if fs.exists(path) else None
    manifest = _read_manifest(fs, path)
    return None if manifest is None else ShardRef(shard=shard, root=root, manifest=manifest)


def complete_shards(spec: str | Iterable[str], read_manifests: bool = True) -> list[ShardRef]:
    """The committed shards named by `spec`.

    `spec` is an output root (`/data/out`, `s3://bucket/out`), a brace pattern of roots
    (`s3://b/out{1,2}`), or a brace/glob pattern of output tars (`out/wds/{00000..00099}.tar`,
    `out/wds/*.tar`); or a list of those. Tars without a manifest are skipped silently, which is
    what lets a trainer follow a job that is still writing. read_manifests=False only checks that
    the manifests exist (one listing, no reads): what the training loader does every epoch.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    refs: list[ShardRef] = []
    for item in specs:
        for url in braceexpand.braceexpand(item):
            if not url.endswith(".tar"):
                refs.extend(_shards_under_root(url, read_manifests))
                continue
            fs, path = _fs(url)
            paths = fs.glob(path) if any(c in path for c in "*?[") else [path]
            for tar_path in sorted(paths):
                ref = _shard_from_tar(_unstrip(fs, tar_path, url), read_manifests)
                if ref is not None:
                    refs.append(ref)
    seen: set[tuple[str, str]] = set()
    unique = []
    for ref in refs:
        if (ref.root, ref.shard) not in seen:
            seen.add((ref.root, ref.shard))
            unique.append(ref)
    return unique


def why_no_shards(spec: str | Iterable[str]) -> str:
    """Why `complete_shards(spec)` is empty: for each root or tar pattern (the first three),
    whether its folder exists and, if it does, that no shard there has a manifest."""
    reasons = []
    for item in [spec] if isinstance(spec, str) else list(spec):
        for url in braceexpand.braceexpand(item):
            root = posixpath.dirname(posixpath.dirname(url)) if url.endswith(".tar") else url
            fs, path = _fs(root)
            fs.invalidate_cache()
            if not fs.exists(path):
                reasons.append(f"{root} does not exist")
            elif url.endswith(".tar"):
                reasons.append(f"no tar matching {url} has a manifest in {join(root, '_manifests')}")
            else:
                reasons.append(f"{url} has no committed shard yet (no {join(url, '_manifests', '*.json')})")
    if not reasons:
        return "no output root was given"
    return "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")


def open_binary(url: str) -> IO[bytes]:
    """A readable binary stream for a local path or any fsspec URL."""
    fs, path = _fs(url)
    return fs.open(path, "rb")


def read_table(refs: Iterable[ShardRef], columns: list[str] | None = None) -> pa.Table:
    """The Parquet rows of the given shards as one Arrow table (through fsspec, so `s3://` works)."""
    tables = []
    for ref in refs:
        fs, path = _fs(ref.parquet_url)
        tables.append(pq.read_table(path, filesystem=fs, columns=columns))
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

    with open_binary(url) as stream:
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
