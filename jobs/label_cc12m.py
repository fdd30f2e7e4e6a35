"""Label img2dataset WebDataset shards with GLIP-style phrase boxes.

    python jobs/label_cc12m.py --input 's3://bucket/cc12m/{00000..01242}.tar' \
        --output s3://bucket/cc12m-boxes --teacher IDEA-Research/grounding-dino-tiny

Runs on the Ray cluster it is submitted to (`ray job submit --working-dir . -- python jobs/...`)
or starts a local Ray. Writes per input shard parquet/SHARD.parquet, wds/SHARD.tar and
_manifests/SHARD.json under --output, and _runs/RUN_ID.json at the end. Exits non-zero and
names every shard that did not finish.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.config import ConfigError, build_config  # noqa: E402


EPILOG = """exit codes: 0 every shard done; 1 some shard failed (each is named); 2 bad flag, config,
input or teacher; 3 another run holds the output (OUTPUT/_lock.json).
Settings may also come from --config FILE.yaml (keys as the flags, with _ or -); flags win."""


class _Parser(argparse.ArgumentParser):
    """One-line errors (the usage block buries them), with a hint for an unquoted glob."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "unrecognized arguments" in message and ".tar" in message:
            message += "; quote the --input pattern ('dir/*.tar') so the shell does not expand it"
        self.exit(2, f"error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python jobs/label_cc12m.py", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="required: shard pattern (brace range, glob or directory), local or s3://")
    p.add_argument("--output", help="required: output root, local directory or s3:// prefix")
    p.add_argument("--teacher", help="required: Hugging Face id, local directory, s3:// prefix, glip-t:PATH or glip-l:PATH")
    p.add_argument("--teacher-revision", help="pin a hub revision (commit) of the teacher")
    p.add_argument("--box-threshold", type=float, help="keep boxes whose phrase score is at least this (default 0.1)")
    p.add_argument("--nms-iou", type=float, help="IoU threshold of the per-phrase NMS (default 0.5)")
    p.add_argument("--max-boxes", type=int, help="at most this many boxes per image (default 100)")
    p.add_argument("--prompt-mode", choices=["caption", "phrases"], help="text prompt: the caption (default) or the joined phrases")
    p.add_argument("--batch-size", type=int, help="images per teacher forward pass (default 16)")
    p.add_argument("--gpu-workers", type=int, help="teacher actors (default: one per GPU, or 1 on CPU)")
    p.add_argument("--cpu-workers", type=int, help="CPU actors reading, parsing and decoding (default: the spare CPUs)")
    p.add_argument("--teacher-threads", type=int, help="CPU threads of a teacher running on the CPU (default: the node's cores shared by its teachers)")
    p.add_argument("--shards-in-flight", type=int, help="shards labelled at once (default: workers + teachers)")
    p.add_argument("--min-size", type=int, help="teacher input shortest side (default 800)")
    p.add_argument("--max-size", type=int, help="teacher input longest side at most (default 1333)")
    p.add_argument("--max-pixels", type=int, help="refuse images with more pixels than this (default 89478485; decompression bombs)")
    p.add_argument("--spacy-model", help="spaCy model for noun phrases (default en_core_web_sm, else its PyPI copy)")
    p.add_argument("--device", help="teacher device, e.g. cuda or cpu (default: cuda when available)")
    p.add_argument("--precision", help="a GPU teacher's arithmetic: bf16 (default) or fp32 (full precision); a CPU teacher computes in fp32")
    p.add_argument("--eager", dest="fast_teacher", action="store_const", const=False, help="use the reference eager teacher, not the fused GPU path")
    p.add_argument("--allow-pickle-checkpoint", action="store_const", const=True, help="allow non-safetensors teacher weights")
    p.add_argument("--overwrite", action="store_const", const=True, help="relabel shards made with other settings")
    p.add_argument("--relabel-damaged", action="store_const", const=True,
                   help="relabel shards that an earlier run labelled from a damaged (truncated, unreadable) input")
    p.add_argument("--config", help="YAML file of settings (flags override it)")
    p.add_argument("--runner", choices=["ray", "inprocess"], default="ray", help="ray (default) or inprocess (no Ray)")
    p.add_argument("--ray-address", help="Ray cluster to join (default: the submitting cluster, else a new local one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


FLAG_FIELDS = (
    "input", "output", "teacher", "teacher_revision", "box_threshold", "nms_iou", "max_boxes", "prompt_mode",
    "batch_size", "gpu_workers", "cpu_workers", "teacher_threads", "shards_in_flight", "min_size", "max_size", "max_pixels",
    "spacy_model", "device", "fast_teacher", "precision", "allow_pickle_checkpoint", "overwrite", "relabel_damaged",
)


def init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:
        ray.init(runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, log_to_driver=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = build_config({k: getattr(args, k) for k in FLAG_FIELDS}, args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipeline.job import run_job

    return run_job(config, runner=args.runner, ray_address=args.ray_address, progress=not args.no_progress, init_ray=init_ray)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before labelling began (the job handles it once shards run)
        print("interrupted before any shard was labelled; nothing was written", file=sys.stderr)
        sys.exit(130)
