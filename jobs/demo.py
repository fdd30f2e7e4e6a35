"""`python jobs/demo.py [WORKDIR]` (installed: `glip-demo`): the labelling job on local Ray with sample shards.

Writes img2dataset-style sample shards and the tiny random teacher (no download), runs
`jobs/label_cc12m.py` on a local Ray instance, verifies the output and prints its summary.
Give `--teacher` to use a real checkpoint instead of the tiny one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdir", nargs="?", default="/tmp/glip-demo", help="where inputs and outputs go")
    p.add_argument("--teacher", help="a real checkpoint (default: a tiny random Grounding DINO)")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--samples", type=int, default=16)
    args = p.parse_args(argv)
    work = Path(args.workdir)
    inputs = work / "shards"
    if not inputs.exists():
        from pipeline.tools.sample_shards import write_sample_shards

        write_sample_shards(str(inputs), shards=args.shards, samples=args.samples, seed=0)
        print(f"wrote {args.shards} sample shard(s) to {inputs}")
    teacher = args.teacher
    extra: list[str] = []
    if teacher is None:
        from teacher.grounding_dino.tiny import write_tiny_teacher

        teacher = str(write_tiny_teacher(work / "tiny-teacher"))
        extra = ["--min-size", "320", "--max-size", "512"]  # the tiny random model needs no full size
        print(f"wrote the tiny random teacher to {teacher} (boxes are meaningless: it is untrained)")
    from jobs.label_cc12m import main as label

    output = work / "out"
    code = label(["--input", str(inputs / "*.tar"), "--output", str(output), "--teacher", teacher, *extra])
    if code != 0:
        return code
    from pipeline.tools.verify import main as verify

    code = verify([str(output), "--input", str(inputs / "*.tar")])
    print(f"\noutput: {output}")
    print(f"  summary:  glip-inspect {output}")
    print(f"  DuckDB:   SELECT status, count(*) FROM '{output}/parquet/*.parquet' GROUP BY 1")
    print(f"  gallery:  glip-gallery {output} --out {work / 'gallery'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
