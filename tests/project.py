"""Paths and settings the test folders share: the checkout, the shared real data, fast job flags."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CC12M = SHARED / "cc12m" / "cc12m-train-0000.tar"
# Small teacher inputs keep the CPU tests fast; the code path is the one real runs use.
FAST_FLAGS = ["--min-size", "128", "--max-size", "224", "--batch-size", "8"]
