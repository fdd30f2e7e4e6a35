"""CPU stage: read a shard, parse captions, decode and resize images, form teacher batches.

Pure (no Ray): the Ray runner and the in-process runner both drive `ShardPreparer.prepare`.
Rows are built here for every sample, whatever happens to it; the teacher only fills in boxes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterator

from parsers import DEFAULT_ABSTRACT_NOUNS, CaptionParse, NounPhraseExtractor
from pipeline.config import LabelConfig, LabelSettings
from pipeline.stages.batching import ShapeBatcher
from pipeline.stages.images import ImageRejected, decode_for_teacher
from pipeline.stages.inputs import shard_id
from pipeline.stages.pair_filter import PairRules
from pipeline.stages.reader import InputSample, ReadReport, iter_samples
from schemas import Status
from schemas.rows import IMAGE_EXTENSIONS, empty_row
from teacher.protocol import TeacherRequest
from teacher.spec import TeacherSpec


@dataclasses.dataclass
class TeacherBatch:
    """Row indices of one shard and their teacher inputs (small numpy arrays, no PIL)."""

    shard: str
    rows: list[int]
    requests: list[TeacherRequest]

    @classmethod
    def of(cls, shard: str, chunk: list[tuple[int, TeacherRequest]]) -> "TeacherBatch":
        """A batch from (row index, request) pairs."""
        return cls(shard, [i for i, _ in chunk], [r for _, r in chunk])


@dataclasses.dataclass
class PreparedShard:
    """Everything but the boxes: one row per input sample, in input order."""

    shard: str
    url: str
    rows: list[dict[str, Any]]
    report: ReadReport
    seconds: dict[str, float]
    teacher_input: dict[str, Any] = dataclasses.field(default_factory=dict)  # how images were sized for the teacher
    groups: frozenset[str] = frozenset()  # the column groups the settings add (schemas.rows.COLUMN_GROUPS)
    pair_rules: PairRules = PairRules()


def column_groups(labels: LabelSettings) -> frozenset[str]:
    """The columns a run's label settings add to the rows."""
    wanted = {"ref_exps": labels.ref_exps, "phrase_audit": labels.phrase_audit, "rescore": bool(labels.rescorer)}
    return frozenset(group for group, on in wanted.items() if on)


def _missing_image_error() -> str:
    """The missing_image row's error, naming every extension the reader takes as the image."""
    exts = [f".{ext}" for ext in sorted(IMAGE_EXTENSIONS)]
    return f"the sample has no image member ({', '.join(exts[:-1])} or {exts[-1]})"


MISSING_IMAGE_ERROR = _missing_image_error()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class ShardPreparer:
    """Loads spaCy once; prepares any number of shards.

    Samples are parsed and decoded `window` at a time; decoded images wait in a `ShapeBatcher`
    (at most max(`carry`, batch size - 1) between windows) until they form a batch with little
    padding. Peak decoded images held: window + that (80 at batch 16: about 250 MB at 800x1333).
    """

    def __init__(self, config: LabelConfig, *, window: int | None = None, carry: int | None = None) -> None:
        self.config = config
        self.extractor = NounPhraseExtractor(config.labels.spacy_model, max_chars=config.labels.max_caption_chars)
        self.window = window or max(config.resources.batch_size * 2, 32)
        self.carry = config.resources.batch_size * 3 if carry is None else carry
        lab = config.labels
        self.teacher_input = {"resize_rule": TeacherSpec.parse(lab.teacher).resize_rule(), "min_size": lab.min_size,
                              "max_size": lab.max_size, "fast_decode": lab.fast_decode}
        self.groups = column_groups(lab)
        self.pair_rules = PairRules(lab.min_pair_score, lab.min_pair_clip)

    def _row(self, sample: InputSample, shard: str) -> dict[str, Any]:
        row = empty_row(sample.key, shard, self.groups)
        meta = sample.meta or {}
        row["url"] = meta.get("url") if isinstance(meta.get("url"), str) else None
        row["original_width"] = _int_or_none(meta.get("original_width"))
        row["original_height"] = _int_or_none(meta.get("original_height"))
        row["caption"] = sample.caption()
        row["image_ext"] = sample.image_ext
        return row

    def _parse(self, captions: list[str]) -> list[CaptionParse]:
        """Each caption's phrases, and what the settings ask for beside them (one spaCy parse)."""
        lab = self.config.labels
        if not (lab.ref_exps or lab.phrase_audit or lab.drop_abstract_nouns):
            return [CaptionParse(found, [], [], None) for found in self.extractor.extract(captions)]
        abstract = DEFAULT_ABSTRACT_NOUNS | frozenset(lab.extra_abstract_nouns) if lab.drop_abstract_nouns else None
        return self.extractor.analyse(captions, ref_exps=lab.ref_exps, abstract_nouns=abstract)

    def _fill_parse(self, row: dict[str, Any], parsed: CaptionParse) -> None:
        row["phrases"] = [{"text": p.text, "start": p.start, "end": p.end} for p in parsed.phrases]
        if "ref_exps" in self.groups:
            row["ref_exps"] = [{"text": r.text, "start": r.start, "end": r.end, "phrase": r.phrase} for r in parsed.ref_exps]
        if "phrase_audit" in self.groups:
            row["dropped_phrases"] = [{"text": d.text, "start": d.start, "end": d.end, "reason": d.reason}
                                      for d in parsed.dropped]
            row["parse_truncated_at"] = parsed.truncated_at

    def _settle_window(
        self, window: list[tuple[int, InputSample]], rows: list[dict], shard: str, timing: dict, batcher: ShapeBatcher
    ) -> Iterator[TeacherBatch]:
        cfg = self.config.labels
        t0 = time.perf_counter()
        parses = self._parse([rows[i]["caption"] for i, _ in window])
        timing["parse"] += time.perf_counter() - t0
        ready: list[tuple[int, TeacherRequest]] = []
        t0 = time.perf_counter()
        for (i, sample), parsed in zip(window, parses):
            row, found = rows[i], parsed.phrases
            self._fill_parse(row, parsed)
            if sample.duplicate_of is not None:
                row.update(status=Status.DUPLICATE_KEY.value, error=f"key {sample.source_key!r} appears more than once in the shard; only its first sample is labelled")
                continue
            if sample.image is None:
                row.update(status=Status.MISSING_IMAGE.value, error=MISSING_IMAGE_ERROR)
                continue
            try:
                image = decode_for_teacher(sample.image, min_size=cfg.min_size, max_size=cfg.max_size, max_pixels=cfg.max_pixels,
                                           resize_rule=self.teacher_input["resize_rule"], fast=cfg.fast_decode)
            except ImageRejected as exc:
                row.update(status=exc.status.value, error=exc.message)
                continue
            row.update(width=image.width, height=image.height, exif_orientation=image.exif_orientation)
            if not row["caption"].strip():
                row.update(status=Status.NO_CAPTION.value, error="the caption is empty or missing")
                continue
            if not found:
                row.update(status=Status.NO_PHRASES.value, error="no groundable noun phrase in the caption")
                continue
            row["status"] = Status.OK.value
            spans = [(p.start, p.end) for p in found]
            ready.append((i, TeacherRequest(image.pixels, image.width, image.height, row["caption"], spans)))
        timing["decode"] += time.perf_counter() - t0
        for chunk in batcher.add(((r.pixels.shape[0], r.pixels.shape[1]), (i, r)) for i, r in ready):
            yield TeacherBatch.of(shard, chunk)

    def prepare(self, url: str) -> Iterator[TeacherBatch | PreparedShard]:
        """Yield teacher batches as they are ready, then the `PreparedShard` (always last)."""
        shard = shard_id(url)
        report = ReadReport()
        rows: list[dict[str, Any]] = []
        window: list[tuple[int, InputSample]] = []
        timing = {"read": 0.0, "parse": 0.0, "decode": 0.0}
        batcher: ShapeBatcher[tuple[int, TeacherRequest]] = ShapeBatcher(self.config.resources.batch_size, self.carry)
        t_read = time.perf_counter()
        for sample in iter_samples(url, report):
            timing["read"] += time.perf_counter() - t_read
            rows.append(self._row(sample, shard))
            window.append((len(rows) - 1, sample))
            if len(window) >= self.window:
                yield from self._settle_window(window, rows, shard, timing, batcher)
                window = []
            t_read = time.perf_counter()
        timing["read"] += time.perf_counter() - t_read
        if window:
            yield from self._settle_window(window, rows, shard, timing, batcher)
        for chunk in batcher.flush():
            yield TeacherBatch.of(shard, chunk)
        yield PreparedShard(shard, url, rows, report, timing, dict(self.teacher_input), self.groups, self.pair_rules)
