"""`glip-evaluate --run`: from a gold set with images to a labelled output, through the normal job.

Each gold caption becomes one input sample of img2dataset-style shards (key = the gold key, the
image's original bytes, the caption, a json with the image id and size), which the job labels
like any web shard; the evaluation then reads the output as it reads any other. So a checkpoint
is scored on Flickr30k by exactly the code that will label a web corpus with it.

The images come from `--images`: a folder (the gold file's `file` names, or IMAGE_ID.jpg/.png/...)
or an img2dataset shard pattern whose samples name the image id in their json (`image_id`,
`flickr30k_id`, `id`) or in their key.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import storage
from pipeline.stages.inputs import list_shards
from pipeline.stages.reader import iter_samples
from pipeline.tools.evaluate.gold import GoldError, GoldSample
from pipeline.tools.sample_shards import write_tar
from schemas.rows import IMAGE_EXTENSIONS

SAMPLES_PER_SHARD = 1000
_ID_FIELDS = ("image_id", "flickr30k_id", "id")


def images_from(source: str, gold: list[GoldSample]) -> dict[str, tuple[bytes, str]]:
    """image id -> (original bytes, extension) for every image the gold set names."""
    wanted = {g.image_id for g in gold}
    found = _from_shards(source, wanted) if source.endswith(".tar") or "{" in source else _from_folder(source, gold)
    missing = sorted(wanted - set(found))
    if missing:
        raise GoldError(f"--images {source} has no image for {len(missing)} gold image(s) (e.g. {missing[0]!r}); "
                        "give the folder or the shards that hold them")
    return found


def _from_folder(folder: str, gold: list[GoldSample]) -> dict[str, tuple[bytes, str]]:
    found: dict[str, tuple[bytes, str]] = {}
    for g in gold:
        if g.image_id in found:
            continue
        names = ([g.file] if g.file else []) + [f"{g.image_id}.{ext}" for ext in sorted(IMAGE_EXTENSIONS)]
        for name in names:
            url = storage.join(folder, name)
            if storage.exists(url):
                found[g.image_id] = (storage.read_bytes(url), name.rsplit(".", 1)[-1].lower())
                break
    return found


def _from_shards(pattern: str, wanted: set[str]) -> dict[str, tuple[bytes, str]]:
    found: dict[str, tuple[bytes, str]] = {}
    for url in list_shards(pattern):
        for sample in iter_samples(url):
            meta = sample.meta or {}
            ids = [str(meta[f]) for f in _ID_FIELDS if meta.get(f) is not None] + [sample.source_key]
            image_id = next((i for i in ids if i in wanted), None)
            if image_id is not None and sample.image is not None and image_id not in found:
                found[image_id] = (sample.image, sample.image_ext.rsplit(".", 1)[-1])
    return found


def write_gold_shards(gold: list[GoldSample], images: dict[str, tuple[bytes, str]], folder: Path) -> str:
    """One sample per gold caption, in shards of SAMPLES_PER_SHARD; returns their glob pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for first in range(0, len(gold), SAMPLES_PER_SHARD):
        members = []
        for g in gold[first: first + SAMPLES_PER_SHARD]:
            data, ext = images[g.image_id]
            record = {"key": g.key, "image_id": g.image_id, "caption": g.caption, "width": g.width, "height": g.height}
            members += [(f"{g.key}.{ext}", data), (f"{g.key}.txt", g.caption.encode("utf-8")),
                        (f"{g.key}.json", json.dumps(record).encode("utf-8"))]
        write_tar(str(folder / f"{first // SAMPLES_PER_SHARD:05d}.tar"), members)
    return posixpath.join(str(folder), "*.tar")

