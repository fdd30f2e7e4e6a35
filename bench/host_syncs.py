"""Count the host waits in one Grounding DINO forward, with transformers' tensor checks on and off.

Runs on the CPU (nothing waits there; `HostSyncAudit` records the operations that would wait on a
GPU). `python bench/host_syncs.py` audits the default model (Swin-T, 6+6 layers, random weights)
on a small batch; `--size tiny` the tiny test model.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch
from teacher_forward import build_model, forward_fn, make_batch  # noqa: E402

from teacher.grounding_dino.fast.host_sync import HostSyncAudit, tensor_checks_skipped  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=("full", "tiny"), default="full")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=320)
    args = p.parse_args(argv)
    device = torch.device("cpu")
    model = build_model(args.size, device)
    batch = make_batch(2, args.height, args.width, 32, model.config.text_config.vocab_size, seed=0)
    forward = forward_fn(model, device, autocast=False, from_host=True)
    print("| transformers tensor checks | read-backs | uploads from Python data | where |\n| --- | ---: | ---: | --- |")
    for label, checks in (("on", contextlib.nullcontext), ("skipped", lambda: tensor_checks_skipped(model))):
        with checks(), HostSyncAudit() as audit:
            forward(batch)
        where = sorted({w for _, w in [*audit.readbacks, *audit.uploads]})
        print(f"| {label} | {sum(audit.readbacks.values())} | {sum(audit.uploads.values())} | {', '.join(where)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
