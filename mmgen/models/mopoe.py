"""MoPoE-VAE (Sutter, Daunhawer & Vogt, "Generalized Multimodal ELBO", ICLR 2021).

The joint posterior of the modalities S is the equal-weight mixture, over every non-empty subset
A of S, of the product of the experts of A (without a prior expert, so a single modality's
component is its own expert): ``q(z | x_S) = 1/|P(S)| sum_A PoE({q_m(z | x_m)}_{m in A})``.
Training maximizes ``E_q[sum_m w_m log p(x_m | z)] - beta * 1/|P| sum_A KL(q_A || p)`` (the
mixture's KL bounded by the mean of its components', as in the paper): each example's z comes from
one component, the components dealt out to the examples in a random order (a stratified draw from
the mixture; ``draws="all"``: one z from every component for every example, the mixture's
expectation at |P(S)| times the decoding), by the fused ``mmgen.ops.reparameterize``, and the
components' KLs by ``mmgen.ops.gaussian_kl``.

With ``private_dim`` > 0 each modality also has a private latent u_m (see
:mod:`mmgen.models.multimodal_vae`): the bound gains ``- beta * sum_m KL(q(u_m | x_m) || p(u_m))``, and a
modality is decoded from ``[z, u_m]`` with u_m from its posterior when z's component holds m, else
from the auxiliary prior N(0, private_scale^2 I) (MMVAE+'s training of the modality-specific
latents, here over MoPoE's subsets).
"""
from __future__ import annotations

import torch

import mmgen
from mmgen.models.multimodal_vae import MultimodalVAE, Posterior, product_of_experts, repeat_rows

DRAWS = ("stratified", "all")


class MoPoE(MultimodalVAE):
    """Multimodal VAE with a mixture-of-products-of-experts posterior (see the module docs).

    Args:
        modalities, latent_dim, beta, private_dim, private_scale: see
            :class:`mmgen.models.multimodal_vae.MultimodalVAE`.
        draws: "stratified" (one component's z per example) or "all" (every component's z).
    """

    family = "mopoe"

    def __init__(self, modalities: dict, latent_dim: int = 32, beta: float = 1.0, draws: str = "stratified",
                 private_dim: int = 0, private_scale: float = 1.0):
        if draws not in DRAWS:
            raise ValueError(f"MoPoE draws must be one of {', '.join(map(repr, DRAWS))}, got {draws!r}")
        super().__init__(modalities, latent_dim, beta, draws=draws, private_dim=private_dim,
                         private_scale=private_scale)
        self.draws = draws
        # inside[j, i]: the i-th subset of all_subsets() holds the j-th modality (built once: on a GPU
        # a tensor made from a list per step would be a host-to-device copy per step)
        self.register_buffer("inside", torch.tensor([[m in s for s in self.all_subsets()] for m in self.names]),
                             persistent=False)

    def components(self, experts: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [product_of_experts([experts[m][0] for m in subset], [experts[m][1] for m in subset], prior=False)
                for subset in self.all_subsets(tuple(experts))]

    def posterior_of(self, experts: dict) -> Posterior:
        return Posterior(self.components(experts))

    def loss(self, x: dict, **_) -> torch.Tensor:
        """Minus the MoPoE ELBO, batch mean (nats per example)."""
        self.check_batch(x)
        experts, private = self.encode(x, self.names)  # in self.names' order, the order of self.inside
        components = self.components(experts)
        mu = torch.stack([m for m, _ in components])  # [C, B, D]
        logvar = torch.stack([lv for _, lv in components])
        c, b, d = mu.shape
        kl = mmgen.ops.gaussian_kl(mu.reshape(c * b, d), logvar.reshape(c * b, d)).view(c, b).mean(0)
        for private_mu, private_logvar in private.values():
            kl = kl + mmgen.ops.gaussian_kl(private_mu, private_logvar)
        inside = dict(zip(self.names, self.inside))  # inside[m][i]: component i's subset holds m
        if self.draws == "all":  # one z from every component for every example: the mixture's expectation
            z = mmgen.ops.reparameterize(mu.reshape(c * b, d), logvar.reshape(c * b, d))
            repeated = {m: repeat_rows(x[m], c) for m in self.names}
            if private:
                u = self.private_draws({m: (repeat_rows(pm, c), repeat_rows(pl, c), inside[m].repeat_interleave(b))
                                        for m, (pm, pl) in private.items()})
            else:
                u = None
            reconstruction = self.reconstruction(repeated, z, self.names, u).view(c, b).mean(0)
        else:
            which = torch.randperm(b, device=mu.device) % c
            rows = torch.arange(b, device=mu.device)
            z = mmgen.ops.reparameterize(mu[which, rows], logvar[which, rows])
            u = self.private_draws({m: (pm, pl, inside[m][which]) for m, (pm, pl) in private.items()}) \
                if private else None
            reconstruction = self.reconstruction(x, z, self.names, u)
        return -(reconstruction - self.beta * kl).mean()

    def private_draws(self, own: dict) -> dict:
        """``{m: u_m}`` per row from ``own[m] = (mu, logvar, held)`` of q(u_m | x_m) per row: u_m from
        that posterior where ``held`` (z's component holds m), else from the auxiliary prior
        N(0, private_scale^2 I)."""
        u = {}
        for m in self.names:
            private_mu, private_logvar, held = own[m]
            u[m] = torch.where(held.unsqueeze(1), mmgen.ops.reparameterize(private_mu, private_logvar),
                               self.prior_private(len(held), scale=self.private_scale))
        return u
