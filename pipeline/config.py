"""The job's configuration: a frozen dataclass with defaults, from CLI flags and a YAML file.

The config hash covers exactly the settings that change what is written for a shard; resume
skips a shard only when its manifest carries the same hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from schemas import SCHEMA_VERSION
from teacher.protocol import DEFAULT_PRECISION, PRECISIONS

if TYPE_CHECKING:
    from teacher.protocol import GroundingSettings

PROMPT_MODES = ("caption", "phrases")
# Hashed settings left out of the hash at their default (see `hashed_settings`).
HASHED_ONLY_IF_SET = {"precision": DEFAULT_PRECISION}
LOCAL_TEACHER = "local checkpoint"


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
    teacher_threads: int | None = None
    min_size: int = 800
    max_size: int = 1333
    max_pixels: int = 89_478_485
    spacy_model: str | None = None
    max_caption_chars: int = 2000
    shards_in_flight: int | None = None
    shard_retries: int = 2
    teacher_tries: int = 3
    fast_teacher: bool = True
    precision: str = DEFAULT_PRECISION
    allow_pickle_checkpoint: bool = False
    overwrite: bool = False
    relabel_damaged: bool = False
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
        if "://" not in self.output and Path(self.output).expanduser().is_file():
            raise ConfigError(f"--output {self.output} is a file; give a directory or an s3:// prefix")
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
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size} must be at least 1")
        if self.min_size < 1 or self.max_size < self.min_size:
            raise ConfigError(f"--min-size {self.min_size} / --max-size {self.max_size}: need 1 <= min-size <= max-size")
        for name in ("gpu_workers", "cpu_workers", "shards_in_flight"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value} must not be negative")
        if self.teacher_threads is not None and self.teacher_threads < 1:
            raise ConfigError(f"--teacher-threads {self.teacher_threads} must be at least 1")
        return self

    def grounding_settings(self) -> "GroundingSettings":
        """The teacher-side settings of this config."""
        from teacher.protocol import GroundingSettings

        return GroundingSettings(self.box_threshold, self.nms_iou, self.max_boxes, self.prompt_mode)

    def hashed_settings(self) -> dict[str, Any]:
        settings = {name: getattr(self, name) for name in self.HASHED}
        if self.teacher_revision and "://" not in self.teacher and Path(self.teacher).expanduser().is_dir():
            # A local checkpoint is known by its content (`teacher_revision`), not by where it
            # lies: a copy of it, or the same folder named by another path, resumes the run.
            settings["teacher"] = LOCAL_TEACHER
        for name, default in HASHED_ONLY_IF_SET.items():
            # Settings added later are hashed only when not the default, so outputs labelled
            # before they existed (all bf16 on a GPU) keep their hash and resume.
            if getattr(self, name) != default:
                settings[name] = getattr(self, name)
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


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check a YAML value against the field's type (flags are typed by argparse already)."""
    kind = str(FIELDS[name].type)
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"setting {name} in {source} needs a value")
    if "bool" in kind:
        if not isinstance(value, bool):
            raise ConfigError(f"setting {name} in {source} must be true or false, not {value!r}")
        return value
    if "float" in kind or "int" in kind:
        if isinstance(value, bool):
            raise ConfigError(f"setting {name} in {source} must be a number, not {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name} in {source} must be a number, not {value!r}") from None
        if "int" in kind and "float" not in kind:
            if number != int(number):
                raise ConfigError(f"setting {name} in {source} must be a whole number, not {value!r}")
            return int(number)
        return number
    return str(value)


def build_config(flags: Mapping[str, Any], yaml_path: str | None = None) -> LabelConfig:
    """Defaults < YAML file < flags given on the command line (None means 'not given')."""
    import difflib

    values: dict[str, Any] = {}
    if yaml_path:
        from_file = load_yaml(yaml_path)
        for name in from_file:
            if name not in FIELDS:
                close = difflib.get_close_matches(name, list(FIELDS), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known settings: {', '.join(sorted(FIELDS))}"
                raise ConfigError(f"unknown setting {name!r} in {yaml_path}{hint}")
        values.update({k: _coerce(k, v, yaml_path) for k, v in from_file.items()})
    for name, value in flags.items():
        if value is None:
            continue
        if name not in FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = float(value) if isinstance(FIELDS[name].default, float) and isinstance(value, int) else value
    return LabelConfig(**values).validate()


def diff_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two hashed-settings dicts."""
    keys = sorted(set(old) | set(new))

    def shown(settings: Mapping[str, Any], key: str) -> str:
        if key not in settings and key in HASHED_ONLY_IF_SET:
            return f"{HASHED_ONLY_IF_SET[key]!r} (the default)"
        return repr(settings.get(key))

    return [f"{k}: {shown(old, k)} -> {shown(new, k)}" for k in keys if shown(old, k) != shown(new, k)]
