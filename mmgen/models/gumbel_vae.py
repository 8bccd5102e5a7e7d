"""VAE with categorical latents relaxed by Gumbel-softmax (Jang et al. 2017; Maddison et al. 2017)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.models.base import GenerativeModel, component
from mmgen.models.vae import encoder_input, make_likelihood


class GumbelVAE(GenerativeModel):
    """``latents`` categorical variables with ``categories`` values each; q(z|x) is a product of
    categoricals, p(z) uniform. The decoder reads the one-hot (or relaxed) z flattened to
    ``[B, latents * categories]``.

    Training (``loss``) draws relaxed samples ``softmax((logits + g) / tau)``, g ~ Gumbel(0, 1);
    with ``straight_through=True`` the decoder sees the hard one-hot argmax and the gradient is the
    relaxed sample's. The temperature follows ``tau = max(tau_min, tau_start * exp(-anneal_rate * t))``
    where t counts the calls of ``loss`` in training mode (buffer ``steps_trained``, saved and
    resumed with the weights); evaluation does not advance it.

    ``elbo`` and ``iwae_bound`` use exact (hard) categorical samples: they bound the discrete
    model's log p(x) in nats. The KL to the uniform prior is analytic.

    Args:
        encoder: module or spec with ``out_features``; the model adds the logit head.
        decoder: module or spec with ``in_features == latents * categories``.
        likelihood: "bernoulli", "gaussian" or {"name": "categorical", "levels": L}.
    """

    data_components = {"encoder": "encoder", "decoder": "decoder"}  # built on the data (mmgen.infer)

    def __init__(self, encoder, decoder, latents: int = 20, categories: int = 10, likelihood="bernoulli",
                 tau_start: float = 1.0, tau_min: float = 0.5, anneal_rate: float = 3e-5,
                 straight_through: bool = False):
        super().__init__()
        self.encoder, enc_spec = component(encoder, "encoder", "GumbelVAE encoder")
        self.decoder, dec_spec = component(decoder, "decoder", "GumbelVAE decoder")
        self.likelihood, lik_spec = make_likelihood(likelihood)
        if not isinstance(latents, int) or latents < 1 or not isinstance(categories, int) or categories < 2:
            raise ValueError(f"GumbelVAE needs latents >= 1 and categories >= 2, got latents={latents!r}, "
                             f"categories={categories!r}")
        if not 0 < tau_min <= tau_start or anneal_rate < 0:
            raise ValueError(f"GumbelVAE needs 0 < tau_min <= tau_start and anneal_rate >= 0, got "
                             f"tau_min={tau_min}, tau_start={tau_start}, anneal_rate={anneal_rate}")
        for module, attr, what in ((self.encoder, "out_features", "encoder"),
                                   (self.decoder, "in_features", "decoder")):
            if not isinstance(getattr(module, attr, None), int):
                raise ValueError(f"GumbelVAE {what} {type(module).__name__} has no integer attribute "
                                 f"{attr!r} (see the component contract)")
        if self.decoder.in_features != latents * categories:
            raise ValueError(f"GumbelVAE decoder takes in_features={self.decoder.in_features} but "
                             f"latents * categories = {latents * categories}; they must match")
        self.head = nn.Linear(self.encoder.out_features, latents * categories)
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        self.latents, self.categories = latents, categories
        self.tau_start, self.tau_min, self.anneal_rate = float(tau_start), float(tau_min), float(anneal_rate)
        self.straight_through = straight_through
        self.config = {"model": "gumbel_vae", "encoder": enc_spec, "decoder": dec_spec, "latents": latents,
                       "categories": categories, "likelihood": lik_spec, "tau_start": self.tau_start,
                       "tau_min": self.tau_min, "anneal_rate": self.anneal_rate,
                       "straight_through": straight_through}

    @property
    def tau(self) -> float:
        """The temperature of the next training step."""
        return max(self.tau_min, self.tau_start * math.exp(-self.anneal_rate * int(self.steps_trained)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalized log q(z|x), ``[B, latents, categories]``."""
        h = self.head(self.encoder(encoder_input(self.likelihood, x)))
        return h.view(-1, self.latents, self.categories)

    def kl(self, logits: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || uniform) per sample: sum over latents of sum_k q log q + log K."""
        log_q = torch.log_softmax(logits, dim=-1)
        return (log_q.exp() * (log_q + math.log(self.categories))).sum((1, 2))

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.flatten(1))

    def _hard_sample(self, logits: torch.Tensor, generator=None) -> torch.Tensor:
        flat = torch.multinomial(torch.softmax(logits.reshape(-1, self.categories), dim=-1), 1,
                                 generator=generator)
        return F.one_hot(flat.view(logits.shape[:-1]), self.categories).to(logits.dtype)

    def loss(self, x: torch.Tensor, **cond) -> torch.Tensor:
        """Negative relaxed ELBO at the current temperature, averaged over the batch."""
        if cond:
            raise ValueError(f"GumbelVAE is unconditional; got condition(s) {sorted(cond)}")
        tau = self.tau
        if self.training:
            self.steps_trained += 1
        logits = self.logits(x)
        z = F.gumbel_softmax(logits, tau=tau, hard=self.straight_through, dim=-1)
        return -(self.likelihood.log_prob(self._decode(z), x) - self.kl(logits)).mean()

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """ELBO of the discrete model per sample, in nats (one exact sample of z, analytic KL)."""
        logits = self.logits(x)
        return self.likelihood.log_prob(self._decode(self._hard_sample(logits)), x) - self.kl(logits)

    @torch.no_grad()
    def iwae_bound(self, x: torch.Tensor, k: int = 64, chunk: int = 256) -> torch.Tensor:
        """log (1/k) sum_i p(x, z_i) / q(z_i | x) with exact categorical z_i, per sample."""
        log_q_all = torch.log_softmax(self.logits(x), dim=-1)
        log_prior = -self.latents * math.log(self.categories)
        log_w = []
        for start in range(0, k, chunk):
            kk = min(chunk, k - start)
            log_q = log_q_all.repeat(kk, 1, 1)
            z = self._hard_sample(log_q)
            log_px = self.likelihood.log_prob(self._decode(z), x.repeat(kk, *[1] * (x.dim() - 1)))
            log_w.append((log_px + log_prior - (z * log_q).sum((1, 2))).view(kk, -1))
        return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)

    @torch.no_grad()
    def nll(self, x: torch.Tensor, k: int = 1000) -> torch.Tensor:
        """Importance-weighted estimate of -log p(x) in nats per sample."""
        return -self.iwae_bound(x, k)

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws: z uniform over the categories, x from the likelihood (or its mean)."""
        logits = torch.zeros(n, self.latents, self.categories, device=self.head.weight.device)
        out = self._decode(self._hard_sample(logits, generator))
        return self.likelihood.mean(out) if mean else self.likelihood.sample(out, generator=generator)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean at the most probable z."""
        logits = self.logits(x)
        z = F.one_hot(logits.argmax(-1), self.categories).to(logits.dtype)
        return self.likelihood.mean(self._decode(z))
