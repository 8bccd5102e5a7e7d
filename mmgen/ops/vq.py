"""Vector quantization: nearest-code search, the straight-through quantizer and EMA statistics.

NaN: a code at NaN distance is never chosen, and a row of x with no non-NaN distance (a row that
contains NaN, for instance) gets index 0 and a NaN sqdist, so the loss of ``vector_quantize`` is
NaN too. Nothing raises, and nothing waits for the device to check.
"""
from __future__ import annotations

import math

import torch

from mmgen._extension import has_native
from mmgen.ops import reference
from mmgen.ops._dispatch import check_float, check_same, check_tensor, use_native

__all__ = ["vq_nearest", "vector_quantize", "vq_ema_stats"]


def _check(x, codebook, op: str, x_dims: int | None) -> None:
    check_tensor(x, "x", op)
    check_tensor(codebook, "codebook", op)
    check_float(x, "x", op)
    check_same(x, codebook, ("x", "codebook"), op, shape=False)
    if x_dims is not None and x.dim() != x_dims:
        raise ValueError(f"{op}: x must be 2-D [N, D], got shape {tuple(x.shape)}")
    if x.dim() == 0:
        raise ValueError(f"{op}: x must have at least 1 dimension [..., D], got a 0-dim tensor")
    if codebook.dim() != 2:
        raise ValueError(f"{op}: codebook must be 2-D [K, D], got shape {tuple(codebook.shape)}")
    if codebook.shape[0] == 0:
        raise ValueError(f"{op}: codebook is empty (K = 0); it needs at least 1 code")
    if codebook.shape[1] != x.shape[-1]:
        raise ValueError(f"{op}: x has D = {x.shape[-1]} features in its last dim but the codebook "
                         f"has D = {codebook.shape[1]}")


def vq_nearest(x: torch.Tensor, codebook: torch.Tensor, *, backend: str = "auto"):
    """Nearest code of every row: ``argmin_k ||x_i - e_k||^2`` for x ``[N, D]``, codebook ``[K, D]``.

    The kernels never build the ``N x K`` distance matrix (extra memory is O(N + K·D)). Ties go to
    the lowest index. ``sqdist`` is differentiable with respect to x and the codebook.

    Returns:
        ``(indices, sqdist)``: int64 ``[N]`` and ``||x_i - e_{indices_i}||^2`` ``[N]`` in x's dtype.
    """
    op = "mmgen.ops.vq_nearest"
    _check(x, codebook, op, x_dims=2)
    if use_native(backend, op, x.device):
        return torch.ops.mmgen.vq_nearest(x, codebook)
    return reference.vq_nearest(x, codebook)


def vector_quantize(x: torch.Tensor, codebook: torch.Tensor, *, beta: float = 0.25,
                    backend: str = "auto"):
    """Quantize x ``[..., D]`` to its nearest codes, with a straight-through gradient.

    Forward and backward are one fused kernel each; the result (values and gradients) is that of
    ``q = codebook[idx]; out = x + (q - x).detach()`` and
    ``loss = mse(q, x.detach()) + beta * mse(x, q.detach())`` (codebook + beta * commitment loss).
    The codebook gradient is a per-code sum over the rows assigned to it.

    Returns:
        ``(quantized, indices, loss)``: quantized shaped like x, int64 indices ``x.shape[:-1]``, and
        the scalar loss (NaN when x has no rows, like the mean of an empty tensor).
    """
    op = "mmgen.ops.vector_quantize"
    _check(x, codebook, op, x_dims=None)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta):
        raise ValueError(f"{op}: beta must be a finite number, got {beta!r}")
    if use_native(backend, op, x.device):
        return torch.ops.mmgen.vector_quantize(x, codebook, float(beta))
    return reference.vector_quantize(x, codebook, float(beta))


def vq_ema_stats(x: torch.Tensor, indices: torch.Tensor, num_codes: int, *, backend: str = "auto"):
    """Per-code row counts and row sums, for EMA codebook updates (no one-hot matrix).

    Args:
        x: ``[..., D]`` floating tensor.
        indices: int64 tensor of shape ``x.shape[:-1]`` with values in ``[0, num_codes)``.
        num_codes: K.

    Returns:
        ``(counts [K], sums [K, D])`` in float32 (float64 when x is float64).
    """
    op = "mmgen.ops.vq_ema_stats"
    check_tensor(x, "x", op)
    check_tensor(indices, "indices", op)
    check_float(x, "x", op)
    if x.dim() == 0:
        raise ValueError(f"{op}: x must have at least 1 dimension [..., D], got a 0-dim tensor")
    if indices.dtype != torch.int64:
        raise TypeError(f"{op}: indices must be int64, got {indices.dtype}")
    if indices.device != x.device:
        raise ValueError(f"{op}: x and indices must be on the same device, got {x.device} and "
                         f"{indices.device}")
    if indices.shape != x.shape[:-1]:
        raise ValueError(f"{op}: indices must have the shape of x without its last dim "
                         f"{tuple(x.shape[:-1])}, got {tuple(indices.shape)}")
    if isinstance(num_codes, bool) or not isinstance(num_codes, int) or num_codes < 1:
        raise ValueError(f"{op}: num_codes must be a positive int, got {num_codes!r}")
    if use_native(backend, op, x.device):
        return torch.ops.mmgen.vq_ema_stats(x, indices, num_codes)
    return reference.vq_ema_stats(x, indices, num_codes)


def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


if has_native():
    @torch.library.register_fake("mmgen::vq_nearest")
    def _vq_nearest_fake(x, codebook):
        return x.new_empty((x.shape[0],), dtype=torch.int64), x.new_empty((x.shape[0],))

    @torch.library.register_fake("mmgen::vector_quantize")
    def _vector_quantize_fake(x, codebook, beta=0.25):
        return (torch.empty_like(x, memory_format=torch.contiguous_format),
                x.new_empty(x.shape[:-1], dtype=torch.int64), x.new_empty(()))

    @torch.library.register_fake("mmgen::_vector_quantize_backward")
    def _vector_quantize_backward_fake(grad_quantized, grad_loss, x, codebook, indices, beta,
                                       output_mask=(True, True)):
        def grad(t, wanted):
            return torch.empty_like(t, memory_format=torch.contiguous_format) if wanted else x.new_empty((0,))
        return grad(x, output_mask[0]), grad(codebook, output_mask[1])

    @torch.library.register_fake("mmgen::vq_ema_stats")
    def _vq_ema_stats_fake(x, indices, num_codes):
        dt = _stats_dtype(x.dtype)
        return x.new_empty((num_codes,), dtype=dt), x.new_empty((num_codes, x.shape[-1]), dtype=dt)

    def _vq_nearest_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1], output[0])

    def _vq_nearest_backward(ctx, _grad_indices, grad_sqdist):
        x, codebook, indices = ctx.saved_tensors
        if grad_sqdist is None:
            return None, None
        # d sqdist_i = 2 (x_i - e_k) . (dx_i - de_k): a gather for x, a scatter-add for the codebook.
        scaled = 2.0 * grad_sqdist.unsqueeze(1) * (x - codebook[indices])
        grad_codebook = None
        if ctx.needs_input_grad[1]:
            grad_codebook = torch.zeros_like(codebook).index_add_(0, indices, scaled, alpha=-1)
        return (scaled if ctx.needs_input_grad[0] else None), grad_codebook

    torch.library.register_autograd("mmgen::vq_nearest", _vq_nearest_backward,
                                    setup_context=_vq_nearest_setup)

    def _vector_quantize_setup(ctx, inputs, output):
        x, codebook, beta = inputs
        ctx.beta = beta
        ctx.save_for_backward(x, codebook, output[1])

    def _vector_quantize_backward(ctx, grad_quantized, _grad_indices, grad_loss):
        x, codebook, indices = ctx.saved_tensors
        wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]  # an EMA codebook needs none
        grad_x, grad_codebook = torch.ops.mmgen._vector_quantize_backward(
            grad_quantized, grad_loss, x, codebook, indices, ctx.beta, wanted)
        return (grad_x if wanted[0] else None), (grad_codebook if wanted[1] else None), None

    torch.library.register_autograd("mmgen::vector_quantize", _vector_quantize_backward,
                                    setup_context=_vector_quantize_setup)

    def _vq_ema_stats_setup(ctx, inputs, output):
        ctx.x_dtype = inputs[0].dtype
        ctx.save_for_backward(inputs[1])

    def _vq_ema_stats_backward(ctx, _grad_counts, grad_sums):
        (indices,) = ctx.saved_tensors
        if grad_sums is None:
            return None, None, None
        return grad_sums[indices].to(ctx.x_dtype), None, None

    torch.library.register_autograd("mmgen::vq_ema_stats", _vq_ema_stats_backward,
                                    setup_context=_vq_ema_stats_setup)
