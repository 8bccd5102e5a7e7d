"""GAN objectives on discriminator outputs (logits, or critic scores for the Wasserstein ones).

Each objective is a pair: the discriminator loss on ``(d_real, d_fake)`` and the generator loss on
``d_fake``, both minimized and averaged over the batch.

- ``minimax``: Goodfellow et al. 2014, G minimizes log(1 - D(G(z))) (saturates early in training).
- ``non_saturating``: the same D, G maximizes log D(G(z)) instead.
- ``wgan`` / ``wgan_gp``: Wasserstein critic (Arjovsky et al. 2017; Gulrajani et al. 2017); the
  Lipschitz bound comes from weight clipping or from :func:`gradient_penalty`.
- ``hinge``: Lim & Ye 2017 / Miyato et al. 2018.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


class Objective(NamedTuple):
    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator: Callable[[torch.Tensor], torch.Tensor]


def _bce_discriminator(d_real, d_fake):
    # -log sigmoid(d_real) - log(1 - sigmoid(d_fake))
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def _wasserstein_discriminator(d_real, d_fake):
    return d_fake.mean() - d_real.mean()


def _hinge_discriminator(d_real, d_fake):
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def _critic_generator(d_fake):
    return -d_fake.mean()


OBJECTIVES = {
    "minimax": Objective(_bce_discriminator, lambda d_fake: -F.softplus(d_fake).mean()),
    "non_saturating": Objective(_bce_discriminator, lambda d_fake: F.softplus(-d_fake).mean()),
    "wgan": Objective(_wasserstein_discriminator, _critic_generator),
    "wgan_gp": Objective(_wasserstein_discriminator, _critic_generator),
    "hinge": Objective(_hinge_discriminator, _critic_generator),
}


def get(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown GAN objective {name!r}; accepted: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x critic(x_hat)||_2 - 1)^2] at x_hat = u * real + (1 - u) * fake, u ~ U[0, 1] per
    sample (Gulrajani et al. 2017). Differentiable with respect to the critic's parameters."""
    u = torch.rand(real.shape[0], *[1] * (real.dim() - 1), device=real.device, dtype=real.dtype)
    x_hat = (u * real + (1 - u) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()
