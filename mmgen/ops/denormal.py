"""Flush-to-zero for denormal floats on the CPU, on every thread that runs PyTorch's kernels.

A float32 below 1.2e-38 in magnitude is denormal, and x86 cores compute with denormals tens of
times slower than with normal floats. Training pushes some activations and gradients there (a
saturated sigmoid's gradient, an importance weight far below the largest), and a step then costs
several times more (measured in docs/training.md, "Denormal floats on the CPU"). With the
mode on, denormal inputs read as zero and denormal results are written as zero, so nothing below
1.2e-38 survives; no loss or metric mmgen computes depends on such values (they work in log space).

``torch.set_flush_denormal`` sets the mode of the calling thread only: the threads of PyTorch's
intra-op pool, which run most of a multi-threaded step, keep computing with denormals.
:func:`set_flush_denormal` sets every pool thread too (with mmgen's native library; without it,
only the calling thread, and it says so by its return value). Training (``train.flush_denormal``,
on by default) and evaluation run under :func:`flush_denormal`.
"""
from __future__ import annotations

import contextlib

import torch

from mmgen._extension import has_native


def denormals_flushed() -> bool:
    """Whether the calling thread flushes denormals to zero now (a float32 denormal times one is
    zero only then)."""
    return bool((denormal_floats(1) * 1.0).item() == 0.0)


def denormal_floats(n: int) -> torch.Tensor:
    """n float32 denormals (1.47e-39), made from their bits: no float arithmetic can flush them."""
    return torch.full((n,), 1 << 20, dtype=torch.int32).view(torch.float32)


def set_flush_denormal(on: bool) -> str:
    """Flush denormal floats to zero (``on``) or compute with them, on the calling thread and every
    thread of PyTorch's intra-op pool. Returns where it took effect: ``"all threads"``, ``"calling
    thread"`` (no native library: PyTorch's own switch) or ``"unsupported"`` (a CPU without the
    mode; nothing changed)."""
    if not isinstance(on, bool):
        raise TypeError(f"set_flush_denormal(on) takes True or False, got {on!r}")
    if has_native():
        return "all threads" if torch.ops.mmgen._set_flush_denormal(on) else "unsupported"
    return "calling thread" if torch.set_flush_denormal(on) else "unsupported"


@contextlib.contextmanager
def flush_denormal(on: bool = True):
    """Flush denormals to zero on every PyTorch CPU thread inside the block (``on=False``: leave the
    mode as it is), and restore the calling thread's previous mode (on every thread) after it."""
    if not on:
        yield
        return
    before = denormals_flushed()
    set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            set_flush_denormal(False)
