"""Input shard listing: brace patterns, globs and directories, local or `s3://`."""

from __future__ import annotations

import glob as _glob
import posixpath

import braceexpand

import storage


class ShardListError(ValueError):
    """The input pattern matched nothing or could not be listed."""


def _has_protocol(url: str) -> bool:
    return "://" in url


def list_shards(pattern: str) -> list[str]:
    """Full URLs of the shards `pattern` names, sorted and de-duplicated.

    Space-separated parts are brace-expanded (`{00000..01242}` keeps its zero padding, `{a,b}`
    lists). Brace-expanded names must exist (a missing shard is an error, not silently dropped);
    glob characters are expanded on the pattern's filesystem; a directory stands for the `.tar`
    files in it. Only `.tar` files are shards: img2dataset's `.parquet` and `_stats.json` beside
    them are ignored.
    """
    urls: list[str] = []
    for part in [p for p in pattern.split(" ") if p]:
        for item in braceexpand.braceexpand(part):
            if _glob.has_magic(item.split("://", 1)[-1]):
                urls.extend(u for u in storage.glob(item) if u.endswith(".tar"))
            elif storage.is_dir(item):
                urls.extend(storage.glob(storage.join(item, "*.tar")))
            elif storage.exists(item):
                urls.append(storage.canonical(item))
            else:
                raise ShardListError(f"input shard {item} does not exist; check the --input pattern")
    # Local shards by absolute, normalised path: a manifest names its input, and resume compares it.
    urls = sorted(dict.fromkeys(u if _has_protocol(u) else posixpath.normpath(u) for u in urls))
    if not urls:
        raise ShardListError(f"--input {pattern!r} matched no .tar shards; check the pattern and the bucket")
    ids = [shard_id(u) for u in urls]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ShardListError(f"--input matched several shards with the same name {dupes[0]!r}; shard names must be unique")
    return urls


def shard_id(url: str) -> str:
    """The shard id is the file stem: `s3://b/cc12m/00042.tar` -> `00042`."""
    name = posixpath.basename(url.rstrip("/"))
    return name[: -len(".tar")] if name.endswith(".tar") else name.rsplit(".", 1)[0]
