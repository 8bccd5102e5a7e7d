"""Fused Gumbel-softmax sampling: the wrapper, its fake kernels and its autograd."""
from __future__ import annotations

import math

import torch

from mmgen.kernels.checks import check_float, check_generator, check_same, check_tensor
from mmgen_gumbel import reference
from mmgen_gumbel._extension import library

__all__ = ["gumbel_softmax_sample"]


def gumbel_softmax_sample(logits: torch.Tensor, *, tau: float = 1.0, hard: bool = False, dim: int = -1,
                          uniform: torch.Tensor | None = None, generator: torch.Generator | None = None,
                          backend: str = "auto") -> torch.Tensor:
    """Draw a Gumbel-softmax sample ``softmax((logits + g) / tau)`` along ``dim``, ``g ~ Gumbel(0, 1)``.

    One fused kernel turns uniform noise into Gumbel noise, scores and normalizes; the backward is
    a second kernel that recomputes the sample instead of saving it. With ``hard=True`` the result
    is the one-hot argmax (ties to the lowest index) and its gradient is the relaxed sample's
    (straight-through, Jang et al. 2017).

    Args:
        logits: floating tensor ``[..., K, ...]`` of unnormalized log-probabilities.
        tau: temperature, a finite number > 0.
        hard: return the straight-through one-hot sample.
        dim: the category dimension.
        uniform: the noise, uniform in (0, 1) and shaped like logits (values are clamped to
            ``[tiny, 1 - eps]``); when None it is drawn with ``torch.rand`` from ``generator``
            (or the default generator of logits' device), so ``torch.manual_seed`` reproduces it.
        backend: ``"auto"`` (the native kernel; without one, the reference with a warning on CPU
            inputs and an error on CUDA inputs), ``"native"`` or ``"reference"``.
    """
    op = "mmgen_gumbel.gumbel_softmax_sample"
    check_tensor(logits, "logits", op)
    check_float(logits, "logits", op)
    if logits.dim() == 0:
        raise ValueError(f"{op}: logits must have at least 1 dimension (the categories), got a 0-dim tensor")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"{op}: tau must be a finite number > 0, got {tau!r}")
    if not isinstance(hard, bool):
        raise TypeError(f"{op}: hard must be a bool, got {type(hard).__name__}")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -logits.dim() <= dim < logits.dim():
        raise ValueError(f"{op}: dim must be an int in [{-logits.dim()}, {logits.dim() - 1}], got {dim!r}")
    check_generator(generator, logits.device, op)
    if uniform is None:
        uniform = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    else:
        check_tensor(uniform, "uniform", op)
        check_same(logits, uniform, ("logits", "uniform"), op)
    x, u = logits.movedim(dim, -1), uniform.movedim(dim, -1)
    if library.use_native(backend, op, logits.device):
        y = library.ops.gumbel_softmax_sample(x, u, float(tau), hard)
    else:
        y = reference.gumbel_softmax_sample(x, u, float(tau), hard)
    return y.movedim(-1, dim)


@library.register_fake("gumbel_softmax_sample")
def _gumbel_softmax_sample_fake(logits, uniform, tau, hard):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


@library.register_fake("_gumbel_softmax_backward")
def _gumbel_softmax_backward_fake(grad, logits, uniform, tau):
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    logits, uniform, tau, _hard = inputs
    ctx.tau = tau
    ctx.save_for_backward(logits, uniform)


def _backward(ctx, grad):
    logits, uniform = ctx.saved_tensors
    grad_logits = library.ops._gumbel_softmax_backward(grad, logits, uniform, ctx.tau)
    return grad_logits, None, None, None


library.register_autograd("gumbel_softmax_sample", _backward, setup_context=_setup_context)
