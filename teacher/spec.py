"""What a `--teacher` value names, parsed in one place for the driver's check and the loaders.

    glip-t:PATH / glip-l:PATH   an official GLIP `.pth` (vocab.txt beside it) or a converted directory
    s3://bucket/prefix          a checkpoint directory copied once per node
    /a/local/dir, ./dir, ~/dir  a checkpoint directory (`file://` accepted)
    org/name                    a Hugging Face hub id
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

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
