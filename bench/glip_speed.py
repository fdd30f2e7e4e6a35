"""GLIP-T / GLIP-L teacher throughput with random weights of the real size.

    python bench/glip_speed.py --device cuda --batch 8            # both variants, 800x1333
    python bench/glip_speed.py --device cpu --size small --iters 1  # CPU smoke check

Times the network forward plus the official ATSS post-processing on batches of padded
800x1333 images with 4-phrase captions (bf16 autocast on a GPU unless --dtype fp32).
Prints one line per variant with images/s.
"""

from __future__ import annotations

import argparse
import time

import torch

from teacher.glip.config import GlipConfig, config_for_variant  # noqa: E402
from teacher.glip.inference import detect  # noqa: E402
from teacher.glip.model import GlipModel  # noqa: E402


def small_config(variant: str) -> GlipConfig:
    """A scaled-down stand-in (smoke checks only): tiny Swin/BERT, 2 fused blocks, 320x512."""
    cfg = config_for_variant(variant)
    cfg.swin_embed_dim, cfg.swin_depths, cfg.swin_num_heads = 32, (2, 2, 2, 2), (1, 2, 4, 8)
    cfg.fpn_channels = cfg.head_channels = 64
    cfg.num_fused_blocks = 2
    cfg.bert.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    cfg.min_size_test, cfg.max_size_test = 320, 512
    return cfg


def run(variant: str, size: str, device: str, batch: int, iters: int, warmup: int, dtype: str,
        image: tuple[int, int] | None = None) -> float:
    cfg = config_for_variant(variant) if size == "full" else small_config(variant)
    torch.manual_seed(0)
    with torch.device(device):
        model = GlipModel(cfg).eval()
    h, w = image or (cfg.min_size_test, cfg.max_size_test)
    images = torch.randn(batch, 3, h, w, device=device)
    ids = torch.zeros(batch, cfg.max_query_len, dtype=torch.long)
    ids[:, :20] = torch.randint(1000, min(cfg.bert["vocab_size"], 30000), (batch, 20))
    ids[:, 0] = 101 % cfg.bert["vocab_size"]
    mask = (ids != 0).long()
    pmap = torch.zeros(4, cfg.max_query_len)
    for p in range(4):
        pmap[p, 1 + 4 * p: 4 + 4 * p] = 1
    autocast = torch.bfloat16 if (dtype == "bf16" and device.startswith("cuda")) else None

    def step() -> None:
        detect(model, images, [(h, w)] * batch, ids, mask, [pmap] * batch, autocast_dtype=autocast)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    elapsed = time.perf_counter() - start
    ips = batch * iters / elapsed
    params = sum(p.numel() for p in model.parameters()) / 1e6
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    print(f"{variant} size={size} params={params:.1f}M device={device} dtype={dtype if autocast else 'fp32'} "
          f"batch={batch} image={h}x{w}: {ips:.2f} images/s ({elapsed / iters * 1000:.0f} ms/batch, "
          f"peak {mem:.1f} GiB)", flush=True)
    return ips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", nargs="+", default=["glip-t", "glip-l"], choices=["glip-t", "glip-l"])
    ap.add_argument("--size", default="full", choices=["full", "small"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--image", default=None, help="HxW of the padded batch (default: the test size, 800x1333)")
    args = ap.parse_args()
    image = tuple(int(v) for v in args.image.lower().split("x")) if args.image else None
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for variant in args.variant:
        try:
            run(variant, args.size, args.device, args.batch, args.iters, args.warmup, args.dtype, image)
        except torch.OutOfMemoryError as err:
            print(f"{variant}: out of memory at batch {args.batch} ({err})", flush=True)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()
