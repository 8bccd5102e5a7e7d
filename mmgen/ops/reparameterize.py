"""Fused reparameterization with in-kernel Philox RNG, and the Gaussian KL."""
from __future__ import annotations

import torch

from mmgen._extension import has_native
from mmgen.ops import reference
from mmgen.ops._dispatch import check_float, check_generator, check_same, check_tensor, use_native

__all__ = ["reparameterize", "gaussian_kl"]


def _check(mu, logvar, op: str) -> None:
    check_tensor(mu, "mu", op)
    check_tensor(logvar, "logvar", op)
    check_float(mu, "mu", op)
    check_same(mu, logvar, ("mu", "logvar"), op)
    if mu.dim() == 0:
        raise ValueError(f"{op}: mu must have at least 1 dimension (dim 0 is the batch), got a "
                         "0-dim tensor")


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, *, generator: torch.Generator | None = None,
                   return_kl: bool = False, backend: str = "auto"):
    """Sample ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` drawn inside the kernel.

    eps comes from counter-based Philox keyed by the generator's seed and offset (the default
    generator of ``mu``'s device when ``generator`` is None), so ``torch.manual_seed`` makes it
    reproducible and CPU and CUDA generators seeded alike draw the same eps. The backward pass
    regenerates eps instead of saving it.

    Args:
        mu, logvar: tensors of the same shape ``[B, ...]`` and floating dtype, on one device.
        generator: a ``torch.Generator`` of the inputs' device, or None.
        return_kl: also return ``KL(N(mu, exp(logvar)) || N(0, I))`` summed over all dims but 0.
        backend: ``"auto"`` (the native kernel; without one, the reference with a warning on CPU
            inputs and an error on CUDA inputs), ``"native"`` or ``"reference"``.

    Returns:
        ``z`` shaped like ``mu``, or ``(z, kl)`` with ``kl`` of shape ``[B]`` when ``return_kl``.
    """
    op = "mmgen.ops.reparameterize"
    _check(mu, logvar, op)
    check_generator(generator, mu.device, op)
    if use_native(backend, op, mu.device):
        z, kl, _ = torch.ops.mmgen.reparameterize(mu, logvar, generator, return_kl)
    else:
        seed, offset = reference.philox_seed_offset(generator, mu.device)
        z, kl = reference.reparameterize(mu, logvar, seed, offset, return_kl)
    return (z, kl) if return_kl else z


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` per sample: summed over all dims but 0, shape ``[B]``."""
    op = "mmgen.ops.gaussian_kl"
    _check(mu, logvar, op)
    if use_native(backend, op, mu.device):
        return torch.ops.mmgen.gaussian_kl(mu, logvar)
    return reference.gaussian_kl(mu, logvar)


if has_native():
    @torch.library.register_fake("mmgen::reparameterize")
    def _reparameterize_fake(mu, logvar, generator=None, return_kl=False):
        z = torch.empty_like(mu, memory_format=torch.contiguous_format)
        kl = mu.new_empty((mu.shape[0] if return_kl else 0,))
        return z, kl, mu.new_empty((2,), dtype=torch.int64)

    @torch.library.register_fake("mmgen::_reparameterize_backward")
    def _reparameterize_backward_fake(grad_z, grad_kl, mu, logvar, rng_state, need_grad_mu=True):
        grad_mu = (torch.empty_like(mu, memory_format=torch.contiguous_format) if need_grad_mu
                   else mu.new_empty((0,)))
        return grad_mu, torch.empty_like(mu, memory_format=torch.contiguous_format)

    @torch.library.register_fake("mmgen::gaussian_kl")
    def _gaussian_kl_fake(mu, logvar):
        return mu.new_empty((mu.shape[0],))

    # The autograd kernels of reparameterize and gaussian_kl are C++ (csrc/ops/autograd.cpp): the
    # ops run on small [batch, latent] tensors every step, where a Python autograd kernel cost more
    # than the op itself.
