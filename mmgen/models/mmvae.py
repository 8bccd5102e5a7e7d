"""MMVAE (Shi, Siddharth, Paige & Torr, "Variational Mixture-of-Experts Autoencoders for Multi-Modal
Deep Generative Models", NeurIPS 2019).

The joint posterior is the equal-weight mixture of the unimodal experts, ``q(z | x_S) = 1/|S|
sum_{m in S} q_m(z | x_m)``. Training maximizes the stratified importance-weighted bound: for each
modality m, ``k`` draws z ~ q_m(z | x_m) (the fused ``mmgen.ops.reparameterize``) with log weights
``log w = sum_n w_n log p(x_n | z) + beta (log p(z) - log q(z | x))`` (every modality reconstructed
from every expert's draws), averaged over the modalities of ``log mean_k w``. With
``objective="dreg"`` (the default, as in the paper's code) the gradient is the doubly reparameterized
estimator (Tucker et al. 2019): log q is evaluated with its parameters held fixed, the decoder's
gradient is weighted by the normalized importance weights and the path gradient through z by
their squares; the loss value is then that surrogate, not the bound (``log_prob`` reports the bound).

With ``private_dim`` > 0 this is MMVAE+ (Palumbo, Daunhawer & Vogt, ICLR 2023): every modality also
has a private latent u_m (see :mod:`mmgen.models.multimodal_vae`). Expert m's draws take u_m from
q(u_m | x_m) and every other modality's u_n from the auxiliary prior N(0, private_scale^2 I), and the
log weights gain ``beta (log p(u_m) - log q(u_m | x_m))``.
"""
from __future__ import annotations

import math

import torch

import mmgen
from mmgen.models.multimodal_vae import MultimodalVAE, Posterior, repeat_rows
from mmgen.models.vae import gaussian_log_density, standard_log_density

OBJECTIVES = ("dreg", "iwae")


class MMVAE(MultimodalVAE):
    """Multimodal VAE with a mixture-of-experts posterior (see the module docs).

    Args:
        modalities, latent_dim, beta: see :class:`mmgen.models.multimodal_vae.MultimodalVAE`.
        k: importance samples per modality in the training objective.
        objective: "dreg" (doubly reparameterized gradients) or "iwae" (the plain IWAE gradient).
    """

    family = "mmvae"

    def __init__(self, modalities: dict, latent_dim: int = 32, beta: float = 1.0, k: int = 4,
                 objective: str = "dreg", private_dim: int = 0, private_scale: float = 1.0):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"MMVAE k must be a positive int, got {k!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"MMVAE objective must be one of {OBJECTIVES}, got {objective!r}")
        super().__init__(modalities, latent_dim, beta, k=k, objective=objective, private_dim=private_dim,
                         private_scale=private_scale)
        self.k, self.objective = k, objective

    def posterior_of(self, experts: dict) -> Posterior:
        return Posterior(list(experts.values()))

    def loss(self, x: dict, **_) -> torch.Tensor:
        """Minus the stratified objective, batch mean (see the module docs)."""
        self.check_batch(x)
        experts, private = self.encode(x)
        repeated = {m: repeat_rows(x[m], self.k) for m in self.names}
        dreg = self.objective == "dreg"
        proposal = Posterior([(mu.detach(), lv.detach()) for mu, lv in experts.values()] if dreg
                             else list(experts.values()))
        per_modality = []
        for source, (mu, logvar) in experts.items():
            z = mmgen.ops.reparameterize(repeat_rows(mu, self.k), repeat_rows(logvar, self.k))
            paths = [z]  # the draws whose path gradients DReG weights
            if private:
                private_mu, private_logvar = (repeat_rows(t, self.k) for t in private[source])
                own = mmgen.ops.reparameterize(private_mu, private_logvar)
                paths.append(own)
                if dreg:
                    private_mu, private_logvar = private_mu.detach(), private_logvar.detach()
                u = {m: own if m == source else self.prior_private(len(z), scale=self.private_scale)
                     for m in self.names}
                prior_ratio = standard_log_density(own) - gaussian_log_density(own, private_mu, private_logvar)
            else:
                u, prior_ratio = None, 0.0
            reconstruction = self.reconstruction(repeated, z, self.names, u)
            log_w = (reconstruction + self.beta * (standard_log_density(z) - proposal.log_prob(z) + prior_ratio)
                     ).view(self.k, -1)
            if dreg:
                weights = torch.softmax(log_w.detach(), 0)
                for path in paths:
                    if path.requires_grad:
                        path.register_hook(lambda grad, w=weights.reshape(-1, 1): grad * w)
                per_modality.append((weights * log_w).sum(0))
            else:
                per_modality.append(torch.logsumexp(log_w, 0) - math.log(self.k))
        return -torch.stack(per_modality).mean(0).mean()
