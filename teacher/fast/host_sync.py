"""Keep the host from waiting on the GPU in the middle of a forward pass.

A forward that reads a device value back (`.item()`, `if tensor:`, `nonzero`) or builds a tensor
from Python data on the GPU (an upload from pageable memory, which PyTorch waits for) stops the
host until the GPU has drained its queue; the GPU then idles while the host launches the next
kernels. With two teacher calls in flight, the waiting thread must also win the GIL back from
the other call's host work (NMS, padding), so every wait can cost milliseconds of an idle GPU.

transformers' Grounding DINO family checks, in each deformable-attention call, that the spatial
shapes add up to the sequence length: a tensor comparison that `torch._check_tensor_all_with`
reads back with `.item()`, 12 waits per forward of the default model (6 encoder and 6 decoder
layers). The shapes are computed inside the same forward, so the check cannot fail for inputs
the teacher builds; transformers switches these checks off for production with
`TRANSFORMERS_DISABLE_TORCH_CHECK=1`, which `skip_transformers_tensor_checks` sets on the GPU
fast path. Two small uploads in transformers' forward remain (its spatial-shape tensor and a
scalar in the text-mask code).

`HostSyncAudit` finds such points on any device, the CPU included (where nothing waits), by
recording the operations that would wait on a GPU: tests use it to keep the teacher's device
pass free of them, and `torch.cuda.set_sync_debug_mode` confirms it on a real GPU.
"""

from __future__ import annotations

import collections
import os
import traceback
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

TENSOR_CHECKS_ENV = "TRANSFORMERS_DISABLE_TORCH_CHECK"

# Operations that read a device value back to the host.
READBACK_OPS = frozenset({
    "aten.item.default",
    "aten._local_scalar_dense.default",
    "aten.is_nonzero.default",
    "aten.equal.default",
    "aten.nonzero.default",
    "aten.masked_select.default",
    "aten._unique2.default",
    "aten.unique_consecutive.default",
    "aten.unique_dim.default",
})
# A tensor made from Python data (torch.tensor, torch.as_tensor of a list): on a GPU, an upload
# from pageable memory that waits for the stream.
UPLOAD_OPS = frozenset({"aten.lift_fresh.default"})
# Indexing with a boolean mask needs the mask's number of true entries on the host.
INDEX_OPS = frozenset({"aten.index.Tensor", "aten.index_put.default", "aten.index_put_.default"})


def skip_transformers_tensor_checks() -> bool:
    """Switch transformers' in-forward tensor checks off unless the user chose a setting.

    Returns whether they are off. Process-wide: a teacher worker process is the only user of
    the model, and its inputs are built by the teacher itself.
    """
    os.environ.setdefault(TENSOR_CHECKS_ENV, "1")
    return os.environ[TENSOR_CHECKS_ENV] == "1"


class HostSyncAudit(TorchDispatchMode):
    """Records, while active, each operation that would make the host wait on a GPU.

    `readbacks` and `uploads` count (operation, where) pairs; `where` is the innermost frame of
    transformers or of this project that issued the operation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.readbacks: collections.Counter[tuple[str, str]] = collections.Counter()
        self.uploads: collections.Counter[tuple[str, str]] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = str(func)
        if name in READBACK_OPS or (name in INDEX_OPS and _has_mask_index(args)):
            self.readbacks[(name, _caller())] += 1
        elif name in UPLOAD_OPS:
            self.uploads[(name, _caller())] += 1
        return func(*args, **(kwargs or {}))


def _has_mask_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(getattr(i, "dtype", None) in (torch.bool, torch.uint8) for i in indices)


def _caller() -> str:
    """The innermost frame in transformers or this project, as `file:function:line`."""
    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for frame in reversed(traceback.extract_stack()):
        if frame.filename == __file__:
            continue
        if "transformers" in frame.filename or frame.filename.startswith(project):
            return f"{os.path.basename(frame.filename)}:{frame.name}:{frame.lineno}"
    return "?"
