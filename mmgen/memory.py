"""Memory helpers for long training and evaluation loops on CPU.

An IWAE evaluation runs the decoder thousands of times on batches of the same size, and a training
loop allocates and frees the same activations every step. glibc returns large freed blocks to the
OS (``munmap``, heap trimming), so every pass faults its activations in again: on a 2-core machine
the kernel time of those page faults exceeded the arithmetic of an evaluation pass (the trainer and
the evaluation call :func:`keep_freed_memory`).
:func:`keep_freed_memory` asks glibc to keep blocks up to 32 MiB in the heap and to keep up to
256 MiB of freed heap; passes whose largest tensor (:func:`largest_allocation`) stays under
32 MiB then reuse the same pages. It is a no-op off glibc and when the user tuned malloc already (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's largest: blocks up to this come from the reusable heap
TRIM_THRESHOLD = 256 * 2 ** 20  # freed heap kept before glibc returns it to the OS
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_USER_TUNING = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
_applied = False


def keep_freed_memory() -> bool:
    """Keep freed blocks up to 32 MiB in this process's heap (glibc ``mallopt``), once per process;
    True when the settings are in effect."""
    global _applied
    if _applied:
        return True
    if any(name in os.environ for name in _USER_TUNING):
        return False
    name = ctypes.util.find_library("c")
    if not name or not os.uname().sysname == "Linux":
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied


class _NewStorages(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.created: dict[int, torch.UntypedStorage] = {}  # held, so no address is reused meanwhile

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage.data_ptr() not in inputs:
                    self.created[storage.data_ptr()] = storage
        return out


def largest_allocation(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), bytes)``: the result and the size of the largest tensor the call
    created (views and in-place results create none; kernels' internal workspaces are not seen).
    glibc returns blocks above its mmap threshold to the OS when freed: a loop whose largest
    tensor stays under :data:`MMAP_THRESHOLD` reuses its memory (:func:`keep_freed_memory`)."""
    counter = _NewStorages()
    with counter:
        out = fn(*args, **kwargs)
    return out, max((s.nbytes() for s in counter.created.values()), default=0)


@contextlib.contextmanager
def channels_last_convolutions(module: torch.nn.Module):
    """Within the block, the 2-D (transposed) convolutions of ``module`` that run on the CPU hold
    their weights in channels-last layout, so oneDNN computes them in that layout (an NCHW input
    gives a channels-last output) instead of reordering per call; on exit every weight gets its
    layout back (same values; the parameters stay the same objects). For inference only: the block
    refuses to run with gradients enabled. ``VAE.nll`` runs its decoder so (the same bound)."""
    if torch.is_grad_enabled():
        raise RuntimeError("channels_last_convolutions is for inference: run it under torch.no_grad()")
    changed = []
    for layer in module.modules():
        weight = getattr(layer, "weight", None)
        if (isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and isinstance(weight, torch.Tensor)
                and weight.device.type == "cpu" and weight.is_contiguous()):
            changed.append((weight, weight.data))
            weight.data = weight.data.contiguous(memory_format=torch.channels_last)
    try:
        yield module
    finally:
        for weight, data in changed:
            weight.data = data


__all__ = ["channels_last_convolutions", "keep_freed_memory", "largest_allocation", "MMAP_THRESHOLD",
           "TRIM_THRESHOLD"]
