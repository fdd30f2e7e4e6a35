"""Where a teacher checkpoint comes from: a Hugging Face id, a local directory or an s3:// prefix.

An `s3://` (or any remote fsspec) prefix is copied once per node into a local cache directory,
guarded by a file lock so several workers on one node do not download it twice.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from pathlib import Path

import storage
from teacher.spec import TeacherSpec

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names it and the fix."""


def cache_root() -> Path:
    return Path(os.environ.get("PSEUDOLABEL_CACHE", Path.home() / ".cache" / "glip-pseudolabel"))


def materialise(spec: str) -> str:
    """Return a local directory (or a hub id unchanged) for `spec`; copies remote prefixes once."""
    parsed = TeacherSpec.parse(spec)
    if not parsed.is_remote:
        return parsed.location
    spec = parsed.location
    digest = hashlib.sha256(spec.rstrip("/").encode()).hexdigest()[:16]
    target = cache_root() / "checkpoints" / digest
    done = target / ".complete"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(str(target) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            root = spec.rstrip("/")
            files = storage.find_files(root)
            if not files:
                raise CheckpointError(f"teacher checkpoint {spec} holds no files; check the --teacher prefix")
            tmp = Path(str(target) + ".partial")
            tmp.mkdir(parents=True, exist_ok=True)
            for url in files:
                if not url.startswith(root + "/"):
                    continue
                dest = tmp / url[len(root) + 1:]
                dest.parent.mkdir(parents=True, exist_ok=True)
                storage.download(url, str(dest))
            if target.exists():
                import shutil

                shutil.rmtree(target)
            tmp.rename(target)
            done.write_text(spec)
    return str(target)


def has_weights(path: Path) -> bool:
    """Whether a checkpoint directory holds weight files (safetensors, or pickle formats)."""
    return any(f.name.endswith((".safetensors", ".safetensors.index.json") + PICKLE_SUFFIXES) for f in path.iterdir())


@dataclasses.dataclass(frozen=True)
class LocatedCheckpoint:
    """A checkpoint ready for `from_pretrained`: a checked local directory, or a hub id."""

    path: str
    is_dir: bool
    revision: str | None  # the revision the user pinned (--teacher-revision, --rescorer-revision)

    @property
    def hub_pin(self) -> str | None:
        """The `revision` for `from_pretrained`: a local directory's revision is its content id, not a commit."""
        return None if self.is_dir else self.revision

    def recorded_revision(self, model_config: object) -> str:
        """What the manifests record: the pinned revision, else the directory's content id or the hub commit."""
        return self.revision or (local_revision(self.path) if self.is_dir else hub_revision(model_config) or "unknown")


def locate_checkpoint(spec: str, what: str, *, allow_pickle: bool, revision: str | None = None) -> LocatedCheckpoint:
    """Copy a remote prefix once (`materialise`); check a local directory before `from_pretrained`
    fails on it less clearly (weights present; pickle-only ones refused unless allowed); refuse a
    local path that does not exist. `what` names the checkpoint in the errors ("teacher", "CLIP")."""
    path = materialise(spec)
    is_dir = Path(path).is_dir()
    if is_dir:
        if not has_weights(Path(path)):
            raise CheckpointError(f"{what} checkpoint {spec} has no weights (model.safetensors); give a complete checkpoint directory")
        check_weight_format(path, allow_pickle)
    elif TeacherSpec.parse(spec).is_local:
        raise CheckpointError(f"{what} checkpoint {spec} does not exist; give a local directory, an s3:// prefix or a Hugging Face id")
    return LocatedCheckpoint(path, is_dir, revision)


def check_weight_format(path: str, allow_pickle: bool) -> None:
    """Refuse pickle-only checkpoints (arbitrary code on load) unless the user allows them."""
    p = Path(path)
    if not p.is_dir():
        return
    names = [f.name for f in p.iterdir()]
    has_safetensors = any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names)
    has_pickle = any(n.endswith(PICKLE_SUFFIXES) for n in names)
    if not has_safetensors and has_pickle and not allow_pickle:
        raise CheckpointError(
            f"teacher checkpoint {path} has only pickle weights; convert it to safetensors "
            "or pass --allow-pickle-checkpoint if you trust its source"
        )


def local_revision(path: str) -> str:
    """A short content id of a local checkpoint: its config and the weight files' headers and sizes."""
    p = Path(path)
    if not p.is_dir():
        return "unknown"
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def hub_revision(model_config: object) -> str | None:
    commit = getattr(model_config, "_commit_hash", None)
    return str(commit) if commit else None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def validate_teacher_spec(spec: str, allow_pickle: bool = False) -> None:
    """Fail fast, on the driver, for a teacher that cannot load: a missing file or a directory
    that is no checkpoint. Hub ids and remote prefixes are checked when the workers load them."""
    parsed = TeacherSpec.parse(spec)
    path = parsed.local_path()
    if parsed.variant:
        if not path.exists():
            raise CheckpointError(f"teacher checkpoint {path} does not exist; give the official {parsed.variant.upper()} .pth or a converted directory")
        return
    if not parsed.is_local:
        return  # a remote prefix or a Hugging Face id: checked where the workers load it
    if not path.is_dir():
        raise CheckpointError(f"teacher checkpoint {spec} does not exist or is not a directory; give a checkpoint directory (glip-tiny-teacher DIR writes a tiny one), an s3:// prefix or a Hugging Face id")
    if not (path / "config.json").exists():
        raise CheckpointError(f"teacher directory {spec} has no config.json; give a directory written by save_pretrained or by python -m teacher.glip.convert")
    if not has_weights(path):
        raise CheckpointError(f"teacher directory {spec} has no weights (model.safetensors); give a complete checkpoint directory")
    check_weight_format(str(path), allow_pickle)
