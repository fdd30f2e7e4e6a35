"""Teacher throughput on one GPU: transformers eager baselines against our fast path.

Prepared for a single short `device` run (an H200, a few minutes): builds Grounding DINO from the
default `GroundingDinoConfig()` (Swin-T + BERT-base) with seeded random weights (no download),
feeds 800x1333 images with 32-token prompts, and reports images/s for

  a. eager fp32, batch 1 (per-image labelling loops)
  b. eager bf16 autocast, batch B (the transformers baseline; inputs already on the GPU)
  c. ours: fused Triton MSDA under bf16 autocast, from pinned uint8 host batches normalised on
     the GPU (so ours pays for the transfer, the baselines do not), batch B and 2B; then the
     same replayed through a CUDA graph, if the forward can be captured. Casting the weights
     to bf16 instead of autocast is left out: on the random default model it yields NaNs.

Each variant is also run on the same check batch as the eager fp32 model and compared: relative
L2 error of the finite token logits and max |box difference| (pred_boxes are normalised, so
that is a fraction of the image size). Variants are guarded independently, the run stops
starting new ones when the time budget is spent, and results go to $OUT/gpu_teacher.json after
every variant. CPU smoke check: `TRITON_INTERPRET=1 python bench/gpu_teacher.py --device cpu --size tiny`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch
from teacher_forward import Outputs, build_model, cuda_graph_fn, forward_fn, make_batch, query_selection, synchronize  # noqa: E402

from teacher.grounding_dino.fast.host_sync import tensor_checks_skipped  # noqa: E402
from teacher.grounding_dino.fast.msda_selfcheck import msda_selfcheck  # noqa: E402
from teacher.grounding_dino.fast_attention import fast_attention_report, install_fast_attention  # noqa: E402

LOGIT_TARGET = 2e-2
BOX_TARGET = 1e-2


def rel_l2(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-12))


def compare(ref: Outputs, got: Outputs) -> dict[str, float | bool]:
    """Relative L2 of the finite logits, and max box error as a fraction of the image size.

    Also the encoder memory's relative L2 and whether the two-stage top-k picked the same
    proposals: with random weights a tiny perturbation can change that pick, and then logits
    and boxes of different queries are being compared (the eager bf16 baseline shows the floor).
    """
    ref_logits, ref_boxes = (t.float() for t in ref[:2])
    logits, boxes = (t.float() for t in got[:2])
    finite = torch.isfinite(ref_logits)
    same_mask = bool(torch.equal(finite, torch.isfinite(logits)))
    diff = (logits[finite] - ref_logits[finite]).norm() / ref_logits[finite].norm().clamp_min(1e-12)
    box_err = (boxes - ref_boxes).abs().max()
    result = {"logits_rel_l2": float(diff), "box_max_err": float(box_err), "same_inf_mask": same_mask}
    result["encoder_rel_l2"] = rel_l2(got[2], ref[2])
    result["same_topk"] = bool((got[3].float() - ref[3].float()).abs().max() < 1e-3)
    result["ok"] = same_mask and result["logits_rel_l2"] <= LOGIT_TARGET and result["box_max_err"] <= BOX_TARGET
    return result


def time_fn(fn: Callable, batch, device, *, warmup: int, iters: int, cap_s: float) -> dict[str, float]:
    """Images/s over `iters` calls after `warmup`, stopping early past `cap_s` seconds."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn(batch)
    synchronize(device)
    warm_s = time.perf_counter() - start
    t0 = time.perf_counter()
    done = 0
    while done < iters:
        fn(batch)
        done += 1
        if time.perf_counter() - t0 > cap_s:
            break
    synchronize(device)
    elapsed = time.perf_counter() - t0
    n = batch["images"].shape[0]
    return {"images_per_s": n * done / elapsed, "iters": done, "s_per_iter": elapsed / done, "warmup_s": warm_s}


def tensor_checks(fn: Callable, model: torch.nn.Module, *, on: bool) -> Callable:
    """Run `fn` (a forward of `model`) with transformers' in-forward tensor checks on (its
    default) or skipped (ours: each check reads a device value back, 12 host waits per forward;
    see teacher/grounding_dino/fast/host_sync.py)."""

    def call(batch):
        with contextlib.nullcontext() if on else tensor_checks_skipped(model):
            return fn(batch)

    return call


def count_host_syncs(fn: Callable, batch) -> int:
    """How many times one call makes the host wait on the GPU, as PyTorch's sync debug mode sees it."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn(batch)
        finally:
            torch.cuda.set_sync_debug_mode(before)
    return sum("synchroniz" in str(w.message) for w in caught)


def profile_table(fn: Callable, batch, device: torch.device, rows: int = 15) -> str:
    """Top GPU kernels of one forward: where the time goes once MSDA is fused."""
    from torch.profiler import ProfilerActivity, profile

    fn(batch)
    synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn(batch)
        synchronize(device)
    return prof.key_averages().table(sort_by="self_device_time_total", row_limit=rows)


def environment(device: torch.device) -> dict[str, str]:
    import transformers

    from teacher.grounding_dino.fast.msda_triton import triton_import_error

    reason = triton_import_error()  # imports Triton when it can
    return {
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "triton": getattr(sys.modules.get("triton"), "__version__", "?") if reason is None else f"unavailable: {reason}",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", ""),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", choices=("full", "tiny"), default="full")
    p.add_argument("--quick", action="store_true", help="fewer warmup/timed iterations")
    p.add_argument("--budget-s", type=float, default=None, help="stop starting variants after this (default 200 quick, 480)")
    p.add_argument("--batch", type=int, default=None, help="baseline/ours batch (default 16 full, 2 tiny); ours also runs 2x")
    p.add_argument("--text-len", type=int, default=32)
    p.add_argument("--no-cuda-graph", action="store_true")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True, help="kernel tables on CUDA")
    p.add_argument("--json", default=None, help="output path (default $OUT/gpu_teacher.json when OUT is set)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but not available; use --device cpu --size tiny for a smoke run", file=sys.stderr)
        return 2
    budget = args.budget_s or (200.0 if args.quick else 480.0)
    height, width = (800, 1333) if args.size == "full" else (64, 96)
    batch_size = args.batch or (16 if args.size == "full" else 2)
    warmup, iters = (2, 5) if args.quick else (3, 10)
    cap_s = 20.0 if args.quick else 40.0
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 reference stays fp32
    torch.backends.cudnn.allow_tf32 = False

    json_path = args.json or (os.path.join(os.environ["OUT"], "gpu_teacher.json") if os.environ.get("OUT") else None)
    results: dict = {"env": environment(device), "args": vars(args), "image": [height, width], "variants": {}}

    def save() -> None:
        results["elapsed_s"] = time.perf_counter() - t_start
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(results, indent=2))

    print(json.dumps(results["env"]), flush=True)
    model = build_model(args.size, device)
    vocab = model.config.text_config.vocab_size
    print(f"model built in {time.perf_counter() - t_start:.1f}s; {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params", flush=True)

    pin = device.type == "cuda"
    batches = {}

    def host_batch(n: int) -> dict[str, torch.Tensor]:
        if n not in batches:
            b = make_batch(n, height, width, args.text_len, vocab, seed=n)
            batches[n] = {k: v.pin_memory() for k, v in b.items()} if pin else b
        return batches[n]

    # The first two images of the main batch: the same inputs for the reference and every variant.
    check = {k: v[:2] for k, v in host_batch(batch_size).items()}
    try:
        if args.size == "full":  # the encoder's call: 800x1333 levels, 8 heads of 32, 4 points
            shapes, heads, head_dim, points = [(100, 167), (50, 84), (25, 42), (13, 21)], 8, 32, 4
        else:
            shapes, heads, head_dim, points = [(8, 12), (4, 6), (2, 3), (1, 2)], 2, 16, 2
        results["kernel_check"] = msda_selfcheck(
            device, shapes, heads=heads, head_dim=head_dim, points=points, batch=batch_size, iters=iters,
            configs=((32, 4), (64, 2), (64, 8), (128, 4), (128, 8)) if device.type == "cuda" else (),
        )
    except Exception as exc:
        results["kernel_check"] = {"error": f"{type(exc).__name__}: {exc}"}
        traceback.print_exc(limit=-4)
    print(f"kernel_check: {json.dumps(results['kernel_check'])}", flush=True)
    save()
    def outputs_or_none(autocast: bool) -> Outputs | None:
        try:
            return tuple(t.clone() for t in forward_fn(model, device, autocast=autocast, from_host=True)(check))
        except Exception:
            traceback.print_exc(limit=-4)
            return None

    selection: list[torch.Tensor] = []
    with query_selection(record=selection):
        reference = outputs_or_none(autocast=False)
    # The transformers bf16 baseline on the same batch: the precision floor that ours inherits.
    reference_bf16 = outputs_or_none(autocast=True)

    fast_model = copy.deepcopy(model)
    patched = install_fast_attention(fast_model, strict=True)
    results["msda_modules_patched"] = patched
    fast_fp32 = copy.deepcopy(fast_model)  # stays fp32: the teacher's --precision fp32

    def eager(autocast: bool) -> Callable:
        return tensor_checks(forward_fn(model, device, autocast=autocast, from_host=False), model, on=True)

    def ours(autocast: bool = True, checks: bool = False, **kw) -> Callable:
        return tensor_checks(forward_fn(fast_model, device, autocast=autocast, from_host=True, **kw), fast_model, on=checks)

    variants: list[tuple[str, Callable[[], tuple[Callable, int, torch.nn.Module]]]] = [
        ("a_eager_fp32_b1", lambda: (eager(False), 1, model)),
        ("b_eager_bf16amp", lambda: (eager(True), batch_size, model)),
        ("c_ours_fp32_msda_check", lambda: (ours(autocast=False), 0, fast_model)),
        ("c_ours_bf16amp", lambda: (ours(), batch_size, fast_model)),
        ("c_ours_bf16amp_2x", lambda: (ours(), 2 * batch_size, fast_model)),
        # Weights cast to bf16 once (the teacher's default on GPU): the same arithmetic as autocast.
        ("c_ours_precast", lambda: (_precast(fast_model, ours()), batch_size, fast_model)),
        ("c_ours_precast_2x", lambda: (ours(), 2 * batch_size, fast_model)),
        # The same with transformers' tensor checks left on: what skipping their host waits gains.
        ("c_ours_precast_checks_on", lambda: (ours(checks=True), batch_size, fast_model)),
        # --precision fp32: the fused kernel without bf16, the reference's arithmetic.
        ("c_ours_fp32", lambda: (tensor_checks(forward_fn(fast_fp32, device, autocast=False, from_host=True), fast_fp32, on=False),
                                 batch_size, fast_fp32)),
    ]
    # Last, after the profiles: a failed capture is the likeliest way to wreck the CUDA context.
    graph_variant = ("c_ours_bf16amp_cudagraph", lambda: (cuda_graph_fn(
        ours(autocast_cache=False), host_batch(batch_size), device
    ), batch_size, fast_model))

    def run_variant(name: str, make: Callable[[], tuple[Callable, int, torch.nn.Module]]) -> None:
        if time.perf_counter() - t_start > budget:
            results["variants"][name] = {"skipped": "time budget spent"}
            print(f"{name}: skipped (budget {budget:.0f}s spent)", flush=True)
            return
        row: dict = {}
        t0 = time.perf_counter()
        try:
            if name.startswith("c_ours") and device.type == "cuda":
                torch.backends.cudnn.benchmark = True
            fn, n, used_model = make()
            row["batch"] = n
            if reference is not None:
                # A graph replays its captured batch: compare that batch's first images.
                got = fn(host_batch(batch_size)) if "cudagraph" in name else fn(check)
                got = tuple(t[: check["images"].shape[0]] for t in got)
                row["check"] = compare(reference, got)
                if selection and "cudagraph" not in name:
                    with query_selection(force=selection):
                        forced = fn(check)
                    row["check_same_selection"] = compare(reference, tuple(t[: check["images"].shape[0]] for t in forced))
                if reference_bf16 is not None and name.startswith("c_ours") and "fp32" not in name:
                    row["vs_eager_bf16amp"] = compare(reference_bf16, got)
            if n:
                row.update(time_fn(fn, host_batch(n), device, warmup=warmup, iters=iters, cap_s=cap_s))
                if device.type == "cuda" and "cudagraph" not in name:
                    row["host_syncs"] = count_host_syncs(fn, host_batch(n))
            row["msda"] = fast_attention_report(used_model)
            if device.type == "cuda":
                row["peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                torch.cuda.reset_peak_memory_stats(device)
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(limit=-4)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        row["variant_s"] = time.perf_counter() - t0
        results["variants"][name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)
        save()

    for name, make in variants:
        run_variant(name, make)
    if device.type == "cuda" and args.profile and time.perf_counter() - t_start < budget:
        for name, model_, checks in (("b_eager_bf16amp", model, True), ("c_ours_bf16amp", fast_model, False)):
            try:
                fn = tensor_checks(forward_fn(model_, device, autocast=True, from_host=False), model_, on=checks)
                table = profile_table(fn, host_batch(batch_size), device)
            except Exception as exc:
                table = f"profile failed: {type(exc).__name__}: {exc}"
            results.setdefault("profiles", {})[name] = table
            print(f"\nprofile {name} (batch {batch_size}, one forward):\n{table}", flush=True)
    if device.type == "cuda" and not args.no_cuda_graph:
        run_variant(*graph_variant)
    print_table(results)
    save()
    return 0


def _precast(model: torch.nn.Module, fn: Callable) -> Callable:
    """Cast `model`'s weights to bf16 once, then hand back `fn` (a forward of that model)."""
    from teacher.precision import precast_weights

    precast_weights(model)
    return fn


def print_table(results: dict) -> None:
    rows = results["variants"]
    base = rows.get("b_eager_bf16amp", {}).get("images_per_s")
    print(f"\n{'variant':28s} {'batch':>5s} {'img/s':>9s} {'x(b)':>6s} {'logitL2':>9s} {'box_err':>8s} {'ok':>3s} "
          f"{'encL2':>9s} {'topk=':>5s} {'syncs':>5s}  msda")
    for name, row in rows.items():
        if "skipped" in row or "error" in row:
            print(f"{name:28s} {row.get('skipped') or row.get('error')}")
            continue
        ips = row.get("images_per_s")
        check = row.get("check", {})
        ratio = f"{ips / base:6.2f}" if ips and base else "     -"
        print(
            f"{name:28s} {row.get('batch', 0):5d} {ips or 0:9.2f} {ratio} "
            f"{check.get('logits_rel_l2', float('nan')):9.2e} {check.get('box_max_err', float('nan')):8.2e} "
            f"{'yes' if check.get('ok') else 'no':>3s} {check.get('encoder_rel_l2', float('nan')):9.2e} "
            f"{str(check.get('same_topk', '-')):>5s} {str(row.get('host_syncs', '-')):>5s}  {row.get('msda', {}).get('calls', {})}"
        )
    floor = rows.get("b_eager_bf16amp", {}).get("check")
    if floor:
        print(f"\nprecision floor: transformers eager bf16 vs eager fp32: logits rel L2 {floor['logits_rel_l2']:.2e}, "
              f"box err {floor['box_max_err']:.2e} (targets {LOGIT_TARGET:g}, {BOX_TARGET:g})")
    for name, row in rows.items():
        if "check_same_selection" in row:
            v = row["check_same_selection"]
            print(f"{name}: with the fp32 reference's query selection: logits rel L2 {v['logits_rel_l2']:.2e}, "
                  f"box err {v['box_max_err']:.2e} -> {'meets' if v['ok'] else 'misses'} the targets")
    for name, row in rows.items():
        if "vs_eager_bf16amp" in row:
            v = row["vs_eager_bf16amp"]
            print(f"{name}: vs eager bf16 autocast: logits rel L2 {v['logits_rel_l2']:.2e}, box err "
                  f"{v['box_max_err']:.2e}, encoder rel L2 {v['encoder_rel_l2']:.2e}, same top-k {v['same_topk']}")
    ours = [r["images_per_s"] for n, r in rows.items() if n.startswith("c_ours") and r.get("images_per_s") and r.get("check", {}).get("ok")]
    if ours and base:
        results["best_ours_over_b"] = max(ours) / base
        print(f"\nbest ours (passing the accuracy check) / eager bf16 batch: {max(ours) / base:.2f}x (target 2.0x)")
    fastest = [r["images_per_s"] for n, r in rows.items() if n.startswith("c_ours") and r.get("images_per_s")]
    if fastest and base:
        results["fastest_ours_over_b"] = max(fastest) / base
        print(f"fastest ours (any accuracy) / eager bf16 batch: {max(fastest) / base:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
