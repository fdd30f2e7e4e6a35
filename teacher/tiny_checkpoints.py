"""What every tiny randomly initialised checkpoint shares (`teacher/grounding_dino/tiny.py`,
`teacher/clip/tiny.py`, and the next backend's): the caption words their offline vocabularies
spell, and the command line that writes one (`python -m teacher.BACKEND.tiny DIR [--seed N]`)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

COMMON_WORDS = """
a an the of in on at to with and or for from by near next under over behind front top side
man woman person people child children boy girl baby family couple group crowd player team
dog cat horse bird cow sheep animal fish car truck bus bike bicycle motorcycle boat train plane
house building street road city tree trees flower flowers grass field park beach sea ocean water
river lake mountain mountains sky cloud clouds snow sun light table chair sofa bed room kitchen
window door wall floor shirt hat dress jacket shoes glasses bag ball frisbee food plate cup
red blue green yellow white black brown orange pink purple gray grey old young small large big
little wooden stone glass modern vintage beautiful happy smiling sitting standing walking running
playing holding wearing looking photo image picture background view stock vector illustration
""".split()


def checkpoint_cli(argv: list[str] | None, prog: str, description: str, write: Callable[..., Any], what: str) -> int:
    """`python -m PROG OUT_DIR [--seed N]`: write a tiny random checkpoint with `write(out_dir, seed=N)`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("out_dir", help="directory to write the checkpoint to")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    args = parser.parse_args(argv)
    path = write(args.out_dir, seed=args.seed)
    print(f"wrote {what} to {path}")
    return 0
