"""Label img2dataset WebDataset shards with GLIP-style phrase boxes.

    python jobs/label_cc12m.py --input 's3://bucket/cc12m/{00000..01242}.tar' \
        --output s3://bucket/cc12m-boxes --teacher IDEA-Research/grounding-dino-tiny

Runs on the Ray cluster it is submitted to (`ray job submit --working-dir . -- python jobs/...`)
or starts a local Ray. Writes per input shard parquet/SHARD.parquet, wds/SHARD.tar and
_manifests/SHARD.json under --output, and _runs/RUN_ID.json at the end. Exits non-zero and
names every shard that did not finish. Installed, the same command is `glip-label`.
"""

from __future__ import annotations

import sys

from pipeline.job import run_command


def main(argv: list[str] | None = None) -> int:
    """The job (flags: `--help`, or the README's table); its exit code."""
    return run_command(argv)


def cli() -> int:
    """The console entry point (`glip-label`): `main`, with Ctrl-C before labelling as one sentence."""
    try:
        return main()
    except KeyboardInterrupt:  # the job handles Ctrl-C itself once shards run
        print("interrupted before any shard was labelled; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
