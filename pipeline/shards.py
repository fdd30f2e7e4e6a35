"""Input shard listing: brace patterns and globs on any fsspec filesystem."""

from __future__ import annotations

import glob as _glob
import posixpath
import re

import fsspec

_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_LIST = re.compile(r"\{([^{}]*,[^{}]*)\}")


class ShardListError(ValueError):
    """The input pattern matched nothing or could not be listed."""


def expand_braces(pattern: str) -> list[str]:
    """Expand `{00000..00012}` ranges (zero padding kept) and `{a,b}` lists, in order."""
    m = _RANGE.search(pattern)
    if m:
        lo, hi = m.group(1), m.group(2)
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        start, stop = int(lo), int(hi)
        step = 1 if stop >= start else -1
        out: list[str] = []
        for i in range(start, stop + step, step):
            out.extend(expand_braces(pattern[: m.start()] + str(i).zfill(width) + pattern[m.end():]))
        return out
    m = _LIST.search(pattern)
    if m:
        out = []
        for part in m.group(1).split(","):
            out.extend(expand_braces(pattern[: m.start()] + part + pattern[m.end():]))
        return out
    return [pattern]


def _protocol(url: str) -> str:
    return url.split("://", 1)[0] + "://" if "://" in url else ""


def list_shards(pattern: str) -> list[str]:
    """Full URLs of the shards `pattern` names, sorted and de-duplicated.

    Brace-expanded names must exist (a missing shard is an error, not silently dropped);
    glob characters are expanded on the pattern's filesystem. Only `.tar` files are shards:
    img2dataset's `.parquet` and `_stats.json` beside them are ignored.
    """
    urls: list[str] = []
    for part in [p for p in pattern.split(" ") if p]:
        for item in expand_braces(part):
            fs, path = fsspec.core.url_to_fs(item)
            proto = _protocol(item)
            if _glob.has_magic(path):
                matches = [proto + m if proto else m for m in fs.glob(path)]
                urls.extend(u for u in matches if u.endswith(".tar"))
            elif fs.isdir(path):
                urls.extend(proto + p if proto else p for p in fs.glob(posixpath.join(path, "*.tar")))
            elif fs.exists(path):
                urls.append(proto + path if proto else path)
            else:
                raise ShardListError(f"input shard {item} does not exist; check the --input pattern")
    # Local shards by absolute, normalised path: a manifest names its input, and resume compares it.
    urls = sorted(dict.fromkeys(u if _protocol(u) else posixpath.normpath(u) for u in urls))
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
