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
the teacher builds. `tensor_checks_skipped(model)` skips such tensor checks of the model's
modelling module, only in the calling thread and only inside the `with` block: other models,
other threads and the code after it keep every check. (transformers' own switch,
`TRANSFORMERS_DISABLE_TORCH_CHECK=1`, would turn off every check of every model in the process.)
Two small uploads in transformers' forward remain (its spatial-shape tensor and a scalar in the
text-mask code).

`HostSyncAudit` finds such points on the CPU, where nothing waits, by recording the operations
that would wait on a GPU: tests use it to keep the teacher's device pass free of them, and
`torch.cuda.set_sync_debug_mode` confirms it on a real GPU.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import os
import sys
import traceback
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

_SKIPPING = contextvars.ContextVar("skip_tensor_checks", default=False)
CHECK_NAME = "torch_compilable_check"

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
# Tensor methods that copy to the host without reaching the dispatcher for a CPU tensor.
HOST_COPY_METHODS = ("tolist", "cpu", "numpy")


@contextlib.contextmanager
def tensor_checks_skipped(model: nn.Module) -> Iterator[bool]:
    """Skip the tensor-valued `torch_compilable_check`s of `model`'s modelling module inside the
    block, in this thread only; yields whether that module has such checks to skip."""
    found = _install_switch(sys.modules.get(type(model).__module__))
    token = _SKIPPING.set(True)
    try:
        yield found
    finally:
        _SKIPPING.reset(token)


def _install_switch(module: Any) -> bool:
    """Wrap the module's `torch_compilable_check` once; outside `tensor_checks_skipped` the
    wrapper calls the original unchanged."""
    original = getattr(module, CHECK_NAME, None)
    if original is None:
        return False
    if getattr(original, "_skippable", False):
        return True

    def check(cond: Any, msg: Any, error_type: type[Exception] = ValueError) -> None:
        if _SKIPPING.get() and isinstance(cond, torch.Tensor):
            return
        original(cond, msg, error_type)

    check._skippable = True  # type: ignore[attr-defined]
    setattr(module, CHECK_NAME, check)
    return True


class HostSyncAudit(TorchDispatchMode):
    """Records, while active, each operation that would make the host wait on a GPU.

    `readbacks` and `uploads` count (operation, where) pairs; `where` is the innermost frame of
    transformers or of this project that issued the operation. Seen: the dispatcher's read-backs
    and uploads above, and `.tolist()`, `.cpu()` and `.numpy()`. Not seen: `.to("cpu")` and
    `copy_` into host memory, which on the CPU cannot be told from the uploads of inputs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.readbacks: collections.Counter[tuple[str, str]] = collections.Counter()
        self.uploads: collections.Counter[tuple[str, str]] = collections.Counter()
        self._methods: dict[str, Callable] = {}

    def __enter__(self) -> "HostSyncAudit":
        for name in HOST_COPY_METHODS:
            self._methods[name] = torch.Tensor.__dict__.get(name)  # None: inherited from TensorBase
            setattr(torch.Tensor, name, self._recording(name, getattr(torch.Tensor, name)))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        for name, own in self._methods.items():
            if own is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, own)
        self._methods.clear()

    def _recording(self, name: str, original: Callable) -> Callable:
        def method(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self.readbacks[(f"Tensor.{name}", _caller())] += 1
            return original(tensor, *args, **kwargs)

        return method

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


_PROJECT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir))  # teacher/grounding_dino/fast/


def _caller() -> str:
    """The innermost frame in transformers or this project, as `file:function:line`; installed
    packages inside the project folder (a `.venv`) do not count as the project."""
    for frame in reversed(traceback.extract_stack()):
        path = frame.filename
        if path == __file__:
            continue
        installed = "site-packages" in path or "dist-packages" in path
        if f"{os.sep}transformers{os.sep}" in path or (path.startswith(_PROJECT) and not installed):
            return f"{os.path.basename(path)}:{frame.name}:{frame.lineno}"
    return "?"
