"""The flags of the benchmarks that generate their own input shards."""

from __future__ import annotations

import argparse


def add_shard_args(p: argparse.ArgumentParser, *, shards: int, samples: int) -> None:
    p.add_argument("--shards", type=int, default=shards)
    p.add_argument("--samples", type=int, default=samples, help="samples per generated shard")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-side", type=int, default=1024, help="largest generated image side")
