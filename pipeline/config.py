"""The job's configuration: a frozen dataclass with defaults, from CLI flags and a YAML file.

The config hash covers exactly the settings that change what is written for a shard; resume
skips a shard only when its manifest carries the same hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from schemas import SCHEMA_VERSION

PROMPT_MODES = ("caption", "phrases")


class ConfigError(ValueError):
    """A bad flag or config file; the message is one sentence naming it and the fix."""


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    input: str = ""
    output: str = ""
    teacher: str = ""
    teacher_revision: str | None = None
    box_threshold: float = 0.1
    nms_iou: float = 0.5
    max_boxes: int = 100
    prompt_mode: str = "caption"
    batch_size: int = 16
    gpu_workers: int | None = None
    cpu_workers: int | None = None
    min_size: int = 800
    max_size: int = 1333
    max_pixels: int = 89_478_485
    spacy_model: str | None = None
    max_caption_chars: int = 2000
    shards_in_flight: int | None = None
    shard_retries: int = 2
    teacher_tries: int = 3
    fast_teacher: bool = True
    allow_pickle_checkpoint: bool = False
    overwrite: bool = False
    device: str | None = None

    # Settings that decide the content of a shard's outputs.
    HASHED = (
        "teacher", "teacher_revision", "box_threshold", "nms_iou", "max_boxes", "prompt_mode",
        "min_size", "max_size", "max_pixels", "spacy_model", "max_caption_chars",
    )

    def validate(self) -> "LabelConfig":
        if not self.input:
            raise ConfigError("--input is required: give a shard pattern such as 's3://bucket/cc12m/{00000..01242}.tar'")
        if not self.output:
            raise ConfigError("--output is required: give a local directory or an s3:// prefix")
        if not self.teacher:
            raise ConfigError("--teacher is required: give a checkpoint directory, an s3:// prefix or a Hugging Face id (python -m teacher.tiny DIR writes a tiny one)")
        if not 0.0 <= self.box_threshold <= 1.0:
            raise ConfigError(f"--box-threshold {self.box_threshold} is outside [0, 1]")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ConfigError(f"--nms-iou {self.nms_iou} must be in (0, 1]")
        if self.max_boxes < 1:
            raise ConfigError(f"--max-boxes {self.max_boxes} must be at least 1")
        if self.prompt_mode not in PROMPT_MODES:
            raise ConfigError(f"--prompt-mode {self.prompt_mode!r} is not one of {', '.join(PROMPT_MODES)}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size} must be at least 1")
        if self.min_size < 1 or self.max_size < self.min_size:
            raise ConfigError(f"--min-size {self.min_size} / --max-size {self.max_size}: need 1 <= min-size <= max-size")
        for name in ("gpu_workers", "cpu_workers", "shards_in_flight"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value} must not be negative")
        return self

    def hashed_settings(self) -> dict[str, Any]:
        settings = {name: getattr(self, name) for name in self.HASHED}
        settings["schema_version"] = SCHEMA_VERSION
        return settings

    def config_hash(self) -> str:
        blob = json.dumps(self.hashed_settings(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


FIELDS = {f.name: f for f in dataclasses.fields(LabelConfig)}


def load_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror}); check the --config path") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, such as 'box_threshold: 0.2'")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(flags: Mapping[str, Any], yaml_path: str | None = None) -> LabelConfig:
    """Defaults < YAML file < flags given on the command line (None means 'not given')."""
    values: dict[str, Any] = {}
    if yaml_path:
        values.update(load_yaml(yaml_path))
    values.update({k: v for k, v in flags.items() if v is not None})
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}")
    for name, value in list(values.items()):
        default = FIELDS[name].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"setting {name} must be true or false, not {value!r}")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
    return LabelConfig(**values).validate()


def diff_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two hashed-settings dicts."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
