"""MVAE (Wu & Goodman, "Multimodal Generative Models for Scalable Weakly-Supervised Learning", 2018).

The joint posterior of any subset S of the modalities is the Gaussian product of its experts and of
a prior expert N(0, I): ``q(z | x_S) ∝ p(z) prod_{m in S} q_m(z | x_m)``, so any subset works at
inference. Training uses the sub-sampled ELBO: the sum of ``ELBO(x_S)`` over the full set, every
single modality and ``random_subsets`` further subsets of the others drawn at random each step,
where ``ELBO(x_S) = sum_{m in S} w_m log p(x_m | z) - beta KL(q(z | x_S) || p(z))``, z sampled
with the KL by the fused ``mmgen.ops.reparameterize(..., return_kl=True)``.
"""
from __future__ import annotations

import torch

import mmgen
from mmgen.models.multimodal_vae import MultimodalVAE, Posterior, product_of_experts


class MVAE(MultimodalVAE):
    """Multimodal VAE with a product-of-experts posterior (see the module docs).

    Args:
        modalities, latent_dim, beta: see :class:`mmgen.models.multimodal_vae.MultimodalVAE`.
        random_subsets: subsets of 2 .. M-1 modalities (M = number of modalities) drawn per training
            step besides the full set and the single modalities (Wu & Goodman's sub-sampling).
    """

    family = "mvae"

    def __init__(self, modalities: dict, latent_dim: int = 32, beta: float = 1.0, random_subsets: int = 1):
        if isinstance(random_subsets, bool) or not isinstance(random_subsets, int) or random_subsets < 0:
            raise ValueError(f"MVAE random_subsets must be an int >= 0, got {random_subsets!r}")
        super().__init__(modalities, latent_dim, beta, random_subsets=random_subsets)
        self.random_subsets = random_subsets

    def posterior_of(self, experts: dict) -> Posterior:
        return Posterior([product_of_experts([mu for mu, _ in experts.values()],
                                             [lv for _, lv in experts.values()])])

    def training_subsets(self) -> list[tuple[str, ...]]:
        """The subsets of this step's ELBO terms: all modalities, each one, and the random ones."""
        names = self.names
        subsets = [names] + [(m,) for m in names] if len(names) > 1 else [names]
        middle = [s for s in self.all_subsets() if 1 < len(s) < len(names)]
        if middle and self.random_subsets:
            pick = torch.randint(len(middle), (self.random_subsets,)).tolist()
            subsets += [middle[i] for i in pick]
        return subsets

    def loss(self, x: dict, **_) -> torch.Tensor:
        """Minus the sub-sampled ELBO, batch mean (nats per example, summed over the subset terms)."""
        self.check_batch(x)
        experts = self.experts(x)
        total = 0.0
        for subset in self.training_subsets():
            mu, logvar = product_of_experts([experts[m][0] for m in subset], [experts[m][1] for m in subset])
            z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
            total = total - (self.reconstruction(x, z, subset) - self.beta * kl).mean()
        return total
