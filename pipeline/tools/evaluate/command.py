"""`glip-evaluate OUTPUT --gold FILE --format flickr30k|coco|odvg`: label quality against gold.

    glip-evaluate OUT --gold val.jsonl --format flickr30k [--json PATH] [--report DIR] [--target-precision 0.8]
    glip-evaluate OUT --gold val.jsonl --format flickr30k --run --images IMAGES -- --teacher CKPT [job flags]

Reads the committed shards of a labelled output (local or s3://), pairs their rows with the gold
samples (by key, else by caption and image size), and reports: phrase-grounding recall as MDETR
and GLIP compute it on Flickr30k (ANY-BOX and MERGED-BOXES, R@1/5/10, per phrase type); where gold
phrases are lost (missed by the parser, by the teacher, or grounded); box precision and recall
against the score threshold, the threshold that reaches a target precision, and a reliability
table; COCO AP and AP50 by pycocotools for COCO gold. `--run` first builds shards from the gold
set and its images and labels them with the normal job (the flags after `--` are the job's),
so one command scores a checkpoint. Exit status: 0 done, 1 the job failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import storage
from pipeline.io.committed import NoCommittedShards, read_table, require_committed_shards
from pipeline.tools.evaluate.gold import FORMATS, GoldError, read_gold
from pipeline.tools.evaluate.metrics import coco_ap, evaluate, match_rows
from pipeline.tools.evaluate.report import summary_text, write_report


def evaluate_output(output: str, gold_path: str, fmt: str, *, iou: float = 0.5,
                    target_precision: float | None = None) -> dict[str, Any]:
    """The evaluation of a labelled output against gold (raises GoldError, NoCommittedShards)."""
    gold = read_gold(gold_path, fmt)
    rows = read_table(require_committed_shards(output)).to_pylist()
    pairs = match_rows(gold, rows)
    if not pairs:
        raise GoldError(f"no gold sample of {gold_path} matches a row of {output} (by key, or by caption and image "
                        "size): the gold is for other images; give the gold of the images this output labelled")
    result = evaluate(pairs, iou=iou, target_precision=target_precision)
    result.update(output=output, gold=gold_path, format=fmt, gold_samples=len(gold))
    if fmt == "coco":
        result["coco"] = coco_ap(json.loads(storage.read_bytes(gold_path)), rows)
    return result


def run_labelling(output: str, gold_path: str, fmt: str, images: str, job_args: list[str], work: Path) -> int:
    """Build shards from the gold set and its images, label them into `output`: the job's exit code."""
    from pipeline.job import run_command
    from pipeline.tools.evaluate.gold_shards import images_from, write_gold_shards

    gold = read_gold(gold_path, fmt)
    pattern = write_gold_shards(gold, images_from(images, gold), work / "shards")
    prompt = ["--prompt-mode", "phrases"] if fmt == "coco" and "--prompt-mode" not in job_args else []
    return run_command(["--input", pattern, "--output", output, *prompt, *job_args])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glip-evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", help="labelled output root, local or s3://")
    p.add_argument("--gold", required=True, help="gold annotations, local or s3://")
    p.add_argument("--format", required=True, choices=FORMATS, help="flickr30k (JSONL), coco (instances JSON), odvg (JSONL)")
    p.add_argument("--json", help="also write the full result as JSON here")
    p.add_argument("--report", type=Path, help="write index.html (summary and plots) and evaluation.json into this folder")
    p.add_argument("--target-precision", type=float, help="report the score threshold whose box precision reaches this")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a box to count as correct (default 0.5)")
    p.add_argument("--run", action="store_true", help="first label the gold images into OUTPUT with the job (flags after --)")
    p.add_argument("--images", help="with --run: a folder of the gold images, or img2dataset shards holding them")
    p.add_argument("--work", type=Path, help="with --run: where the gold shards are written (default: a temporary folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    job_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = _parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    for name in ("target_precision", "iou"):
        value = getattr(args, name)
        if value is not None and not 0.0 < value <= 1.0:
            print(f"error: --{name.replace('_', '-')} {value} must be in (0, 1]", file=sys.stderr)
            return 2
    try:
        if args.run:
            if not args.images:
                print("error: --run needs --images: the folder or shards that hold the gold images", file=sys.stderr)
                return 2
            work = args.work or Path(tempfile.mkdtemp(prefix="glip-evaluate-"))
            code = run_labelling(args.output, args.gold, args.format, args.images, job_args, work)
            if code != 0:
                return code
        result = evaluate_output(args.output, args.gold, args.format, iou=args.iou, target_precision=args.target_precision)
    except (GoldError, NoCommittedShards, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(result))
    if result.get("caption_mismatches"):
        print(f"warning: {result['caption_mismatches']} row(s) paired with gold by key have another caption; "
              "their phrase spans cannot be compared", file=sys.stderr)
    if args.json:
        storage.publish_bytes(args.json, json.dumps(result, indent=2, sort_keys=True).encode("utf-8"))
    if args.report:
        print(f"report: {write_report(result, args.report, f'{args.output} against {args.gold}')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
