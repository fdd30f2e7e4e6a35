"""Read the samples of an img2dataset WebDataset shard, streaming, via fsspec.

Members are grouped by key as WebDataset does (the key is the member path up to the first dot
of its file name). A key that appears again after other keys is a duplicate: it is yielded with
`duplicate_of` set so the job gives it its own row. A truncated tar yields every sample before
the cut and then reports the truncation.

A member is the sample's image when the last part of its extension is in
`schemas.rows.IMAGE_EXTENSIONS`, the decoder's list: whatever the reader takes as the image
is given to `decode_for_teacher`, which decodes it or gives the row its own status.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import tarfile
from typing import Any, Iterator

import storage
from schemas.rows import IMAGE_EXTENSIONS


@dataclasses.dataclass
class InputSample:
    key: str  # unique within the shard (duplicates get a `#dupN` suffix)
    source_key: str  # the key as written in the input
    index: int
    image_ext: str | None = None
    image: bytes | None = None
    caption_bytes: bytes | None = None
    meta: dict[str, Any] | None = None
    meta_error: str | None = None
    duplicate_of: str | None = None

    def caption(self) -> str:
        """The caption as read: the `.txt` member (UTF-8, invalid bytes replaced), else the json's."""
        if self.caption_bytes is not None:
            return self.caption_bytes.decode("utf-8", errors="replace")
        if self.meta and isinstance(self.meta.get("caption"), str):
            return self.meta["caption"]
        return ""


@dataclasses.dataclass
class ReadReport:
    samples: int = 0
    truncated: bool = False
    error: str | None = None


def split_member(name: str) -> tuple[str, str]:
    """`dir/000001.jpg` -> (`dir/000001`, `jpg`); WebDataset's key/extension convention."""
    dirname, base = posixpath.split(name)
    if "." in base:
        stem, ext = base.split(".", 1)
    else:
        stem, ext = base, ""
    return (posixpath.join(dirname, stem) if dirname else stem), ext.lower()


def _add_member(sample: InputSample, ext: str, data: bytes) -> None:
    last = ext.rsplit(".", 1)[-1]
    if last in IMAGE_EXTENSIONS and sample.image is None:
        sample.image_ext, sample.image = ext, data
    elif last == "txt" and sample.caption_bytes is None:
        sample.caption_bytes = data
    elif last == "json" and sample.meta is None and sample.meta_error is None:
        try:
            meta = json.loads(data.decode("utf-8", errors="replace"))
            sample.meta = meta if isinstance(meta, dict) else None
        except ValueError as exc:
            sample.meta_error = f"invalid json member: {exc}"


def _has(sample: InputSample, ext: str) -> bool:
    last = ext.rsplit(".", 1)[-1]
    if last in IMAGE_EXTENSIONS:
        return sample.image is not None
    if last == "txt":
        return sample.caption_bytes is not None
    if last == "json":
        return sample.meta is not None or sample.meta_error is not None
    return False


def iter_samples(url: str, report: ReadReport | None = None) -> Iterator[InputSample]:
    """Yield the samples of the tar at `url` in order; fill `report` with truncation info."""
    report = report if report is not None else ReadReport()
    seen: dict[str, int] = {}
    current: InputSample | None = None
    index = 0

    def start(key: str) -> InputSample:
        nonlocal index
        count = seen.get(key, 0)
        seen[key] = count + 1
        unique = key if count == 0 else f"{key}#dup{count}"
        sample = InputSample(key=unique, source_key=key, index=index, duplicate_of=key if count else None)
        index += 1
        return sample

    with storage.open_read(url) as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, ext = split_member(member.name)
                    if not ext or key.startswith("._"):
                        continue
                    fh = tar.extractfile(member)
                    data = fh.read() if fh is not None else b""
                    if len(data) != member.size:
                        raise tarfile.ReadError(f"member {member.name} is cut short")
                    if current is None or current.source_key != key or _has(current, ext):
                        if current is not None:
                            report.samples += 1
                            yield current
                        current = start(key)
                    _add_member(current, ext, data)
                # A tar cut at a header boundary ends without its end-of-archive blocks.
                if tar.fileobj.pos - tar.offset < tarfile.BLOCKSIZE:
                    raise tarfile.ReadError("the archive ends without its end-of-archive marker")
        except (tarfile.ReadError, EOFError) as exc:
            report.truncated = True
            report.error = f"input tar {url} is truncated or corrupt after {index} samples ({exc})"
    if current is not None:
        report.samples += 1
        yield current
