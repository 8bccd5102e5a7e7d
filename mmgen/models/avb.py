"""Adversarial Variational Bayes (Mescheder, Nowozin & Geiger 2017): a VAE whose posterior is implicit
(z = g(x, eps), no density), its KL term estimated by a discriminator T(x, z)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.models.base import GenerativeModel, TrainingStep, component
from mmgen.models.vae import encoder_input, kl_weight, make_likelihood, standard_log_density


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class AVB(GenerativeModel):
    """Implicit encoder z = g(encoder(x), eps), eps ~ N(0, I_noise_dim); decoder p(x|z); p(z) = N(0, I).

    The discriminator T(x, z) (its own ``discriminator`` encoder of x, an MLP over its features and z)
    learns to tell (x, z ~ q(z|x)) from (x, z ~ p(z)) with the logistic loss; at its optimum
    T*(x, z) = log q(z|x) - log p(z) (the density-ratio trick), so the ELBO is estimated by
    E_q [log p(x|z) - T(x, z)], which the encoder and decoder maximize.

    ``adaptive_contrast``: T compares z~ = (z - mu(x)) / sigma(x) (mean and sd of ``moment_samples``
    draws of q(z|x)) with N(0, I) instead, and log q(z|x) - log p(z) = T(x, z~) + log N(z~; 0, I) -
    sum log sigma(x) - log N(z; 0, I): T then only has to learn how far q is from its Gaussian fit.

    Args:
        encoder, decoder: components as for :class:`mmgen.models.VAE`.
        discriminator: an ``encoder`` component for T's view of x.
        latent_dim, likelihood, beta, kl_warmup: as for the VAE (the KL term is T's estimate).
        noise_dim: size of eps (default: latent_dim); hidden: width of the encoder's head and T's MLP.
    """

    data_components = {"encoder": "encoder", "decoder": "decoder", "discriminator": "encoder"}  # mmgen.infer

    def __init__(self, encoder, decoder, discriminator, latent_dim: int = 32, likelihood="bernoulli",
                 noise_dim: int | None = None, hidden: int = 256, beta: float = 1.0, kl_warmup: int = 0,
                 adaptive_contrast: bool = False, moment_samples: int = 8):
        super().__init__()
        self.encoder, enc_spec = component(encoder, "encoder", "AVB encoder")
        self.decoder, dec_spec = component(decoder, "decoder", "AVB decoder")
        self.discriminator, disc_spec = component(discriminator, "encoder", "AVB discriminator")
        self.likelihood, lik_spec = make_likelihood(likelihood)
        for module, attr, what in ((self.encoder, "out_features", "encoder"), (self.decoder, "in_features", "decoder"),
                                   (self.discriminator, "out_features", "discriminator")):
            if not isinstance(getattr(module, attr, None), int):
                raise ValueError(f"AVB {what} {type(module).__name__} has no integer attribute {attr!r} "
                                 "(see the component contract)")
        if self.decoder.in_features != latent_dim:
            raise ValueError(f"AVB decoder takes in_features={self.decoder.in_features} but latent_dim="
                             f"{latent_dim}; they must match")
        noise_dim = latent_dim if noise_dim is None else noise_dim
        checks = {"noise_dim >= 1": isinstance(noise_dim, int) and noise_dim >= 1, "beta >= 0": beta >= 0,
                  "kl_warmup an int >= 0": isinstance(kl_warmup, int) and kl_warmup >= 0,
                  "moment_samples an int >= 2": isinstance(moment_samples, int) and moment_samples >= 2}
        for rule, ok in checks.items():
            if not ok:
                raise ValueError(f"AVB needs {rule}; got noise_dim={noise_dim!r}, beta={beta!r}, "
                                 f"kl_warmup={kl_warmup!r}, moment_samples={moment_samples!r}")
        self.head = _mlp([self.encoder.out_features + noise_dim, hidden, hidden, latent_dim])
        self.critic = _mlp([self.discriminator.out_features + latent_dim, hidden, hidden, 1])
        self.latent_dim, self.noise_dim, self.beta, self.kl_warmup = latent_dim, noise_dim, float(beta), kl_warmup
        self.adaptive_contrast, self.moment_samples = bool(adaptive_contrast), moment_samples
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        self.config = {"model": "avb", "encoder": enc_spec, "decoder": dec_spec, "discriminator": disc_spec,
                       "latent_dim": latent_dim, "likelihood": lik_spec, "noise_dim": noise_dim, "hidden": hidden,
                       "beta": self.beta, "kl_warmup": kl_warmup, "adaptive_contrast": self.adaptive_contrast,
                       "moment_samples": moment_samples}

    # the implicit posterior -------------------------------------------------------------------
    def _draw(self, h: torch.Tensor, generator=None) -> torch.Tensor:
        eps = torch.randn(len(h), self.noise_dim, generator=generator, device=h.device, dtype=h.dtype)
        return self.head(torch.cat([h, eps], dim=1))

    def posterior_sample(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """One z ~ q(z|x) per example."""
        return self._draw(self.encoder(encoder_input(self.likelihood, x)), generator)

    def _posterior(self, x: torch.Tensor):
        """(z ~ q(z|x), what T sees of it, the KL estimate's terms besides T)."""
        h = self.encoder(encoder_input(self.likelihood, x))
        z = self._draw(h)
        if not self.adaptive_contrast:
            return z, z, 0.0
        draws = torch.stack([self._draw(h) for _ in range(self.moment_samples)])
        mu, sd = draws.mean(0), draws.std(0) + 1e-4
        z_std = (z - mu) / sd
        return z, z_std, standard_log_density(z_std) - sd.log().sum(1) - standard_log_density(z)

    def _t(self, x_features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.critic(torch.cat([x_features, z], dim=1)).squeeze(1)

    def kl_estimate(self, x: torch.Tensor):
        """(z ~ q(z|x), T's estimate of log q(z|x) - log p(z)) per example."""
        z, seen, rest = self._posterior(x)
        return z, self._t(self.discriminator(encoder_input(self.likelihood, x)), seen) + rest

    # the model -------------------------------------------------------------------------------
    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        return standard_log_density(z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per row, in nats."""
        return self.likelihood.log_prob(self.decoder(z), x)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The ELBO as AVB estimates it, log p(x|z) - T(x, z) per example (one z; a bound only as far
        as T is the optimal discriminator: compare models by AIS, :mod:`mmgen.eval.ais`)."""
        z, kl = self.kl_estimate(x)
        return self.log_likelihood(x, z) - kl

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's and decoder's objective: -(log p(x|z) - beta T(x, z)), batch mean."""
        z, kl = self.kl_estimate(x)
        return -(self.log_likelihood(x, z) - kl_weight(self, kl.dtype) * kl).mean()

    def discriminator_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Logistic loss of T: (x, z ~ q(z|x)) labelled 1, (x, z ~ N(0, I)) labelled 0."""
        with torch.no_grad():
            _, seen, _ = self._posterior(x)
        features = self.discriminator(encoder_input(self.likelihood, x))
        prior = torch.randn_like(seen)
        return (F.softplus(-self._t(features, seen)) + F.softplus(self._t(features, prior))).mean()

    def training_steps(self) -> list[TrainingStep]:
        model = [p for name, p in self.named_parameters() if not name.startswith(("discriminator.", "critic."))]
        return [TrainingStep("discriminator", [*self.discriminator.parameters(), *self.critic.parameters()],
                             lambda batch: self.discriminator_loss(batch["x"])),
                TrainingStep("model", model, lambda batch: self.loss(batch["x"]))]

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws from the model (``mean=True``: the likelihood's mean instead of a draw)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.critic[0].weight.device)
        out = self.decoder(z)
        return self.likelihood.mean(out) if mean else self.likelihood.sample(out, generator=generator)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean at one z ~ q(z|x)."""
        return self.likelihood.mean(self.decoder(self.posterior_sample(x)))
