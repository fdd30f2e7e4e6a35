"""`OutputLayout`: the paths of everything a labelling run writes under its output root.

    ROOT/parquet/SHARD.parquet    one row per input sample
    ROOT/wds/SHARD.tar            one sample per row whose image decoded
    ROOT/_manifests/SHARD.json    the commit marker, written last: the shard is done iff it exists
    ROOT/_runs/RUN_ID.json        the resolved config and totals of a run
    ROOT/_lock.json               held by the run that writes the output

The writer, the run planner, the output lock, `verify` and every reader of committed shards take
their paths from here, so the layout is spelled out once. Joins go through `storage.join`, which
refuses `..`, so no shard name can point outside the root.
"""

from __future__ import annotations

import dataclasses
import logging

import storage
from schemas import Manifest

log = logging.getLogger(__name__)

PARQUET_DIR, TAR_DIR, MANIFEST_DIR, RUN_DIR = "parquet", "wds", "_manifests", "_runs"
LOCK_NAME = "_lock.json"


class UnreadableManifest(ValueError):
    """A manifest file exists but does not parse: the shard's commit marker is damaged."""


@dataclasses.dataclass(frozen=True)
class OutputLayout:
    root: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.root.rstrip("/") or self.root)

    @staticmethod
    def parquet_name(shard: str) -> str:
        """The Parquet's path relative to the root, as the manifest records it."""
        return f"{PARQUET_DIR}/{shard}.parquet"

    @staticmethod
    def tar_name(shard: str) -> str:
        return f"{TAR_DIR}/{shard}.tar"

    def parquet(self, shard: str) -> str:
        return storage.join(self.root, self.parquet_name(shard))

    def tar(self, shard: str) -> str:
        return storage.join(self.root, self.tar_name(shard))

    def manifest(self, shard: str) -> str:
        return storage.join(self.root, MANIFEST_DIR, f"{shard}.json")

    def run_record(self, run_id: str) -> str:
        return storage.join(self.root, RUN_DIR, f"{run_id}.json")

    @property
    def lock(self) -> str:
        return storage.join(self.root, LOCK_NAME)

    @property
    def manifest_dir(self) -> str:
        return storage.join(self.root, MANIFEST_DIR)

    def published_dirs(self) -> list[str]:
        """The folders that hold published files, where a killed run may leave temp files."""
        return [storage.join(self.root, d) for d in (PARQUET_DIR, TAR_DIR, MANIFEST_DIR, RUN_DIR)]

    def committed_shards(self) -> list[str]:
        """Ids of the shards whose manifest exists, sorted (one listing, no reads)."""
        return [url.rsplit("/", 1)[-1][: -len(".json")] for url in storage.list_prefix(self.manifest_dir, ".json")]

    def read_manifest(self, shard: str) -> Manifest | None:
        """The shard's manifest, None when it has none; raises UnreadableManifest when damaged."""
        url = self.manifest(shard)
        try:
            data = storage.read_bytes(url)
        except FileNotFoundError:
            return None
        try:
            return Manifest.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise UnreadableManifest(f"manifest {url} is unreadable ({exc})") from exc
