"""What a `--teacher` value names, parsed in one place for the driver's check and the loaders.

    glip-t:PATH / glip-l:PATH   an official GLIP `.pth` (vocab.txt beside it) or a converted directory
    s3://bucket/prefix          a checkpoint directory copied once per node
    /a/local/dir, ./dir, ~/dir  a checkpoint directory (`file://` accepted)
    org/name                    a Hugging Face hub id
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import storage

GLIP_VARIANTS = ("glip-t", "glip-l")


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    raw: str
    location: str  # the path, prefix or hub id, without a `glip-x:` or `file://` prefix
    variant: str | None = None  # "glip-t" / "glip-l" when the spec says so

    @classmethod
    def parse(cls, spec: str) -> "TeacherSpec":
        variant, sep, rest = spec.partition(":")
        if sep and variant in GLIP_VARIANTS:
            return cls(spec, rest, variant)
        return cls(spec, spec[len("file://"):] if spec.startswith("file://") else spec)

    @property
    def is_remote(self) -> bool:
        """An fsspec URL (s3://...) to copy to the node before loading."""
        return "://" in self.location

    @property
    def is_local(self) -> bool:
        """A path on this machine, as opposed to a hub id (`org/name`) or a remote prefix."""
        return not self.is_remote and (self.location.startswith((".", "/", "~")) or Path(self.location).exists())

    def local_path(self) -> Path:
        return Path(self.location).expanduser()

    def is_glip(self) -> bool:
        """A GLIP checkpoint: a `glip-x:` spec, or a converted directory (config.json model_type
        "glip"), local or at a remote prefix."""
        if self.variant:
            return True
        if not (self.is_remote or self.is_local):
            return False  # a hub id: the Grounding DINO family
        return has_glip_config(self.location if self.is_remote else str(self.local_path()))

    def resize_rule(self) -> str:
        """The resize rule of the backend this spec names (`teacher.resize.RESIZE_RULES`)."""
        return "glip" if self.is_glip() else "transformers"


def has_glip_config(location: str) -> bool:
    """Whether the checkpoint at `location` (a local directory or a remote prefix) is one that
    `teacher.glip.convert` wrote: its config.json says model_type "glip"."""
    try:
        return json.loads(storage.read_bytes(storage.join(location, "config.json"))).get("model_type") == "glip"
    except (OSError, ValueError, AttributeError):
        return False
