"""Conditional VAE p(x | y) for a class label y (Sohn et al. 2015)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import mmgen
from mmgen.models.base import GenerativeModel, component
from mmgen.models.vae import encoder_input, make_likelihood


class CVAE(GenerativeModel):
    """q(z | x, y) = N(mu, diag exp(logvar)) from the encoder's features and one-hot y;
    p(x | z, y) from the decoder fed ``[z, one_hot(y)]``; p(z) = N(0, I).

    ``condition_on_labels = True``: the trainer and ``mmgen.eval`` pass the dataset's labels as ``y``.

    Args:
        encoder: module or spec with ``out_features`` (reads x only; y joins at the Gaussian heads).
        decoder: module or spec with ``in_features == latent_dim + num_classes``.
        num_classes: labels lie in ``[0, num_classes)``.
        latent_dim: size of z.
        likelihood: "bernoulli", "gaussian" or {"name": "categorical", "levels": L}.
        beta: weight of the KL term in the training loss; the ELBO always uses 1.
    """

    condition_on_labels = True

    def __init__(self, encoder, decoder, num_classes: int = 10, latent_dim: int = 16,
                 likelihood="bernoulli", beta: float = 1.0):
        super().__init__()
        name = type(self).__name__
        self.encoder, enc_spec = component(encoder, "encoder", f"{name} encoder")
        self.decoder, dec_spec = component(decoder, "decoder", f"{name} decoder")
        self.likelihood, lik_spec = make_likelihood(likelihood)
        for module, attr, what in ((self.encoder, "out_features", "encoder"),
                                   (self.decoder, "in_features", "decoder")):
            if not isinstance(getattr(module, attr, None), int):
                raise ValueError(f"{name} {what} {type(module).__name__} has no integer attribute {attr!r} "
                                 "(see the component contract)")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"{name}: num_classes must be an int >= 2, got {num_classes!r}")
        if self.decoder.in_features != latent_dim + num_classes:
            raise ValueError(f"{name} decoder takes in_features={self.decoder.in_features} but it is fed "
                             f"[z, one_hot(y)]: latent_dim + num_classes = {latent_dim + num_classes}")
        if beta < 0:
            raise ValueError(f"{name} needs beta >= 0, got {beta}")
        self.heads = nn.Linear(self.encoder.out_features + num_classes, 2 * latent_dim)
        self.num_classes, self.latent_dim, self.beta = num_classes, latent_dim, float(beta)
        self.config = {"model": "cvae", "encoder": enc_spec, "decoder": dec_spec, "num_classes": num_classes,
                       "latent_dim": latent_dim, "likelihood": lik_spec, "beta": self.beta}

    def one_hot(self, y, batch: int) -> torch.Tensor:
        """One-hot ``[batch, num_classes]`` of labels ``[batch]`` (or one int for the whole batch)."""
        y = torch.as_tensor(y, device=self.heads.weight.device)
        if y.dim() == 0:
            y = y.expand(batch)
        if y.is_floating_point() or y.shape != (batch,):
            raise ValueError(f"{type(self).__name__}: y must be integer class labels of shape ({batch},), "
                             f"got {y.dtype} of shape {tuple(y.shape)}")
        if y.numel() and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(f"{type(self).__name__}: labels must lie in [0, {self.num_classes}), got "
                             f"[{y.min().item()}, {y.max().item()}]")
        return F.one_hot(y.long(), self.num_classes).to(self.heads.weight.dtype)

    def posterior(self, features: torch.Tensor, y_one_hot: torch.Tensor):
        """(mu, logvar) of q(z | x, y) from the encoder's features of x."""
        return self.heads(torch.cat([features, y_one_hot], dim=1)).chunk(2, dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(encoder_input(self.likelihood, x))

    def decode(self, z: torch.Tensor, y_one_hot: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, y_one_hot], dim=1))

    def _terms(self, features, x, y_one_hot):
        """(log p(x | z, y), KL) per sample for one z ~ q(z | x, y)."""
        mu, logvar = self.posterior(features, y_one_hot)
        z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
        return self.likelihood.log_prob(self.decode(z, y_one_hot), x), kl

    def elbo(self, x: torch.Tensor, y) -> torch.Tensor:
        """ELBO of log p(x | y) per sample, in nats (one z sample, analytic KL)."""
        log_px, kl = self._terms(self.features(x), x, self.one_hot(y, len(x)))
        return log_px - kl

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """-(E log p(x | z, y) - beta KL), averaged over the batch."""
        if y is None:
            raise ValueError("CVAE.loss needs the labels y (train with condition_on_labels)")
        log_px, kl = self._terms(self.features(x), x, self.one_hot(y, len(x)))
        return -(log_px - self.beta * kl).mean()

    def _default_labels(self, n: int) -> torch.Tensor:
        return torch.arange(n, device=self.heads.weight.device) % self.num_classes

    @torch.no_grad()
    def sample(self, n: int, *, y=None, mean: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of x ~ p(x | y); ``y``: labels ``[n]`` or one int (default: 0, 1, ..., cycling)."""
        y = self._default_labels(n) if y is None else y
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.heads.weight.device)
        out = self.decode(z, self.one_hot(y, n))
        return self.likelihood.mean(out) if mean else self.likelihood.sample(out, generator=generator)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y) -> torch.Tensor:
        """The likelihood's mean at the posterior mean of z given x and y."""
        y_one_hot = self.one_hot(y, len(x))
        mu, _ = self.posterior(self.features(x), y_one_hot)
        return self.likelihood.mean(self.decode(mu, y_one_hot))
