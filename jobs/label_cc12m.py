"""Label img2dataset WebDataset shards with GLIP-style phrase boxes.

    python jobs/label_cc12m.py --input 's3://bucket/cc12m/{00000..01242}.tar' \
        --output s3://bucket/cc12m-boxes --teacher IDEA-Research/grounding-dino-tiny

Runs on the Ray cluster it is submitted to (`ray job submit --working-dir . -- python jobs/...`)
or starts a local Ray. Writes per input shard parquet/SHARD.parquet, wds/SHARD.tar and
_manifests/SHARD.json under --output, and _runs/RUN_ID.json at the end. Exits non-zero and
names every shard that did not finish. Installed, the same command is `glip-label`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.config import ConfigError, build_config
from pipeline.flags import add_invocation_flags, add_setting_flags, setting_values

EPILOG = """exit codes: 0 every shard done; 1 some shard failed (each is named); 2 bad flag, config,
input or teacher; 3 another run holds the output (OUTPUT/_lock.json); 130 interrupted (Ctrl-C).
Settings may also come from --config FILE.yaml (keys as the flags, with _ or -); flags win."""


class _Parser(argparse.ArgumentParser):
    """One-line errors (the usage block buries them), with a hint for an unquoted glob."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "unrecognized arguments" in message and ".tar" in message:
            message += "; quote the --input pattern ('dir/*.tar') so the shell does not expand it"
        self.exit(2, f"error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(description=__doc__.split("\n\n")[0], epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_setting_flags(p)
    add_invocation_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = build_config(setting_values(args), args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipeline.job import run_job

    return run_job(config, runner=args.runner, ray_address=args.ray_address, progress=not args.no_progress)


def cli() -> int:
    """The console entry point (`glip-label`): `main`, with Ctrl-C before labelling as one sentence."""
    try:
        return main()
    except KeyboardInterrupt:  # the job handles Ctrl-C itself once shards run
        print("interrupted before any shard was labelled; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
