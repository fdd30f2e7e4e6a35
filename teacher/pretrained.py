"""One loader for Hugging Face checkpoints, whatever the backend: the model and its companions
(tokenizer, image processor, processor) from a hub id, a local directory or an s3:// prefix.

Every backend that loads through `transformers` calls `load_pretrained` with its own classes:
the Grounding DINO teacher (`AutoModelForZeroShotObjectDetection` + `AutoTokenizer`), the CLIP
rescorer (`CLIPModel` + `AutoTokenizer` + `AutoImageProcessor`), and so would an OWLv2 teacher
(`Owlv2ForObjectDetection` + `Owlv2Processor`). So each one gets the same rules: the checkpoint
located and checked first (`teacher.checkpoints.locate_checkpoint`), remote code never run,
safetensors only unless pickle is allowed, the pinned hub revision, errors as one sentence with
the fix, and the revision the manifests record.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from schemas.errors import describe_error
from teacher.checkpoints import CheckpointError, LocatedCheckpoint, locate_checkpoint

DEFAULT_FIX = ("give a local directory with config.json and safetensors weights, an s3:// prefix, "
               "or a Hugging Face id reachable from this machine")


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A loaded checkpoint: the model (in eval mode, on its device), its companions by name, where
    it was found, and the revision to record."""

    model: Any
    parts: dict[str, Any]  # e.g. {"tokenizer": ..., "image_processor": ...}, as asked for
    checkpoint: LocatedCheckpoint
    revision: str


def load_pretrained(
    spec: str,
    what: str,
    model_class: Any,
    parts: Mapping[str, Any],
    *,
    device: str,
    allow_pickle: bool = False,
    revision: str | None = None,
    fix: str = DEFAULT_FIX,
) -> Pretrained:
    """Load `model_class` and each of `parts` (name -> a class with `from_pretrained`, loaded in
    that order, before the model) from the checkpoint `spec`; `what` names it in errors ("teacher",
    "CLIP"). A checkpoint that cannot be loaded (missing or unusable files: OSError, ValueError)
    raises CheckpointError naming it, the cause and `fix`."""
    found = locate_checkpoint(spec, what, allow_pickle=allow_pickle, revision=revision)
    common = {"revision": found.hub_pin, "trust_remote_code": False}
    try:
        loaded = {name: cls.from_pretrained(found.path, **common) for name, cls in parts.items()}
        model = model_class.from_pretrained(found.path, use_safetensors=None if allow_pickle else True, **common)
    except (OSError, ValueError) as exc:  # ValueError: files present but unusable (tokenizer, config)
        raise CheckpointError(f"cannot load {what} checkpoint {spec} ({describe_error(exc)}); {fix}") from exc
    model.eval().to(device)
    return Pretrained(model, loaded, found, found.recorded_revision(model.config))
