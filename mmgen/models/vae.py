"""VAE, beta-VAE and IWAE (Kingma & Welling 2014; Higgins et al. 2017; Burda et al. 2016), with an
optional flow posterior (Rezende & Mohamed 2015) and flow prior."""
from __future__ import annotations

import math

import torch
from torch import nn

import mmgen
from mmgen import likelihoods
from mmgen.memory import MMAP_THRESHOLD, channels_last_convolutions, largest_allocation
from mmgen.models.base import GenerativeModel, component
from mmgen.nn import flows


PASS_BYTES = MMAP_THRESHOLD  # default largest tensor of an evaluation's decoder pass (see mmgen.memory)
LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension."""
    return -0.5 * ((z - mu).square() * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def standard_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z.square() + LOG_2PI).sum(-1)


def make_likelihood(spec):
    """A likelihood from a name ("bernoulli"), a spec {"name": ..., **kwargs}, or an instance."""
    if isinstance(spec, str):
        return likelihoods.get(spec), {"name": spec}
    if isinstance(spec, dict):
        kwargs = dict(spec)
        return likelihoods.get(kwargs.pop("name"), **kwargs), dict(spec)
    if hasattr(spec, "log_prob") and hasattr(spec, "sample"):
        return spec, {"name": spec.name, **({"levels": spec.levels} if hasattr(spec, "levels") else {})}
    raise TypeError(f"likelihood must be a name ({', '.join(likelihoods.NAMES)}), a spec dict or a "
                    f"likelihood object, got {type(spec).__name__}")


def encoder_input(likelihood, x: torch.Tensor) -> torch.Tensor:
    """What an encoder sees: integer levels of categorical data scaled to [0, 1], other data as is."""
    levels = getattr(likelihood, "levels", None)
    return x.float() / (levels - 1) if levels else x


def gaussian_iwae_bound(mu: torch.Tensor, logvar: torch.Tensor, log_px, k: int, chunk: int | None = None,
                        max_bytes: int | None = None) -> torch.Tensor:
    """The importance-weighted bound log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x) per example, for
    q = N(mu, diag exp(logvar)) and p(z) = N(0, I). ``log_px(z, kk)`` returns log p(x | z) for z
    ``[kk * B, D]``, rows ordered (sample, example), i.e. against the batch repeated kk times; a
    model whose z is not that Gaussian draw (a flow posterior or prior) adds its correction of the
    weight to what ``log_px`` returns (see :meth:`VAE.iwae_bound`).

    All k draws come from one ``mmgen.ops.reparameterize`` call (k * B * D numbers), so the result
    does not depend on how the decoder passes are split. ``chunk`` samples go through ``log_px`` per
    pass; with ``chunk=None`` and ``max_bytes`` set, the first pass (one sample) measures the largest
    tensor it allocates (:func:`mmgen.memory.largest_allocation`) and the others take as many
    samples as keep that tensor within ``max_bytes``; with neither, all k go in one pass."""
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"iwae chunk must be an int >= 1 (samples per decoder pass) or None, got {chunk!r}")
    check_max_bytes(max_bytes)
    batch = mu.shape[0]
    z = mmgen.ops.reparameterize(mu.repeat(k, 1), logvar.repeat(k, 1)).view(k, batch, -1)
    inv_std = torch.exp(-0.5 * logvar)

    def log_w(start: int, kk: int) -> torch.Tensor:
        zc = z[start:start + kk]
        eps = (zc - mu) * inv_std
        log_p_z_minus_log_q = (0.5 * eps.square() + 0.5 * logvar - 0.5 * zc.square()).sum(2)  # 2 pi cancels
        return log_px(zc.reshape(kk * batch, -1), kk).view(kk, batch) + log_p_z_minus_log_q

    parts, start = [], 0
    if chunk is None and max_bytes is not None:
        first, used = largest_allocation(log_w, 0, 1)
        parts, start, chunk = [first], 1, max(1, max_bytes // max(1, used))
    chunk = chunk or k
    for start in range(start, k, chunk):
        parts.append(log_w(start, min(chunk, k - start)))
    return torch.logsumexp(torch.cat(parts), dim=0) - math.log(k)


def check_max_bytes(max_bytes) -> None:
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
        raise ValueError(f"max_bytes must be a positive int (the largest tensor of a decoder pass, in bytes) or None, "
                         f"got {max_bytes!r}")


def kl_weight(model, dtype: torch.dtype):
    """The KL weight of a training call of ``model.loss``: ``model.beta``, ramped linearly from 0 over
    ``model.kl_warmup`` training calls counted by its buffer ``steps_trained`` (advanced here)."""
    if not (model.training and model.kl_warmup):
        return model.beta
    # A tensor, not .item(): no host sync, and torch.compile keeps the step in one graph
    # (float64, as the Python float was: the same number). The count is replaced, not
    # incremented in place: torch 2.11's compiled backward may recompute the weight from the
    # buffer after an in-place update (pytorch/pytorch#197039), a KL weight one step ahead.
    ramp = ((model.steps_trained + 1).double() / model.kl_warmup).clamp(max=1.0)
    model.steps_trained = model.steps_trained + 1
    return (model.beta * ramp).to(dtype)


class VAE(GenerativeModel):
    """Gaussian-latent VAE: ``q(z|x) = N(mu(x), diag exp(logvar(x)))``, ``p(z) = N(0, I)``.

    Args:
        encoder: module or spec with ``out_features``; the VAE adds the Gaussian heads itself.
        decoder: module or spec with ``in_features == latent_dim``, output read by the likelihood.
        latent_dim: size of z.
        likelihood: "bernoulli", "gaussian" or {"name": "categorical", "levels": L}. Categorical
            data (integer levels) is fed to the encoder scaled to [0, 1].
        beta: weight of the KL term in the training loss (beta-VAE); the ELBO always uses 1.
        k: importance samples of the training objective; ``k > 1`` trains on the IWAE bound.
        kl_warmup: the KL weight of the training loss rises linearly from 0 to ``beta`` over this
            many training calls of ``loss`` (buffer ``steps_trained``, saved with the model); it
            keeps the decoder from learning to ignore z early on (posterior collapse). Each such
            call replaces the buffer by a new tensor (read ``vae.steps_trained`` after it).
        posterior_flow: a flow spec (:func:`mmgen.nn.flows.build`), e.g. ``{"type": "planar",
            "layers": 8}``: z = f_K(...f_1(z0)), z0 ~ N(mu, diag exp(logvar)), the flow amortized on
            the encoder's features; log q(z|x) = log q0(z0|x) - sum log|det|.
        prior_flow: a coupling flow spec, e.g. ``{"type": "coupling", "layers": 4, "hidden": 64}``:
            log p(z) = log N(f(z); 0, I) + log|det df/dz| (f maps z to the Gaussian; sampling runs
            its closed-form inverse).

    With either flow the KL term is no longer closed form: the ELBO uses KL(q0 || N(0, I))
    (analytic) + log N(z0; 0, I) - sum log|det| - log p(z), an unbiased one-sample estimate of
    KL(q || p).
    """

    data_components = {"encoder": "encoder", "decoder": "decoder"}  # built on the data (mmgen.infer)

    def __init__(self, encoder, decoder, latent_dim: int = 16, likelihood="bernoulli",
                 beta: float = 1.0, k: int = 1, kl_warmup: int = 0, posterior_flow: dict | None = None,
                 prior_flow: dict | None = None):
        super().__init__()
        self.encoder, enc_spec = component(encoder, "encoder", "VAE encoder")
        self.decoder, dec_spec = component(decoder, "decoder", "VAE decoder")
        self.likelihood, lik_spec = make_likelihood(likelihood)
        for module, attr, what in ((self.encoder, "out_features", "encoder"),
                                   (self.decoder, "in_features", "decoder")):
            if not isinstance(getattr(module, attr, None), int):
                raise ValueError(f"VAE {what} {type(module).__name__} has no integer attribute {attr!r} "
                                 "(see the component contract)")
        if self.decoder.in_features != latent_dim:
            raise ValueError(f"VAE decoder takes in_features={self.decoder.in_features} but "
                             f"latent_dim={latent_dim}; they must match")
        if not isinstance(kl_warmup, int) or kl_warmup < 0:
            raise ValueError(f"VAE kl_warmup must be an int >= 0, got {kl_warmup!r}")
        self.kl_warmup = kl_warmup
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        if beta < 0 or k < 1:
            raise ValueError(f"VAE needs beta >= 0 and k >= 1, got beta={beta}, k={k}")
        self.heads = nn.Linear(self.encoder.out_features, 2 * latent_dim)
        self.latent_dim, self.beta, self.k = latent_dim, float(beta), int(k)
        self.config = {"model": "vae", "encoder": enc_spec, "decoder": dec_spec,
                       "latent_dim": latent_dim, "likelihood": lik_spec, "beta": self.beta, "k": self.k,
                       "kl_warmup": kl_warmup}
        self.posterior_flow = self.prior_flow = None
        if posterior_flow is not None:
            self.posterior_flow = flows.build(posterior_flow, latent_dim, self.encoder.out_features,
                                              "VAE posterior_flow")
            self.config["posterior_flow"] = dict(posterior_flow)
        if prior_flow is not None:
            if isinstance(prior_flow, dict) and prior_flow.get("type") == "planar":
                raise ValueError("VAE prior_flow must be a coupling flow ({'type': 'coupling', ...}): "
                                 "sampling runs the prior flow backwards and planar flows have no "
                                 "closed-form inverse")
            self.prior_flow = flows.build(prior_flow, latent_dim, 0, "VAE prior_flow")
            self.config["prior_flow"] = dict(prior_flow)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return encoder_input(self.likelihood, x)

    def _posterior(self, x: torch.Tensor):
        """(encoder features, mu, logvar) of x."""
        h = self.encoder(self.encoder_input(x))
        mu, logvar = self.heads(h).chunk(2, dim=1)
        return h, mu, logvar

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the Gaussian q0(z0|x) (the posterior itself without a posterior flow)."""
        return self._posterior(x)[1:]

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per row: N(0, I), or with a prior flow f, log N(f(z); 0, I) + log|det df/dz|."""
        if self.prior_flow is None:
            return standard_log_density(z)
        u, log_det = self.prior_flow(z)
        return standard_log_density(u) + log_det

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per row, in nats."""
        return self.likelihood.log_prob(self.decoder(z), x)

    def _sample_posterior(self, h, mu, logvar):
        """One z ~ q(z|x) per row and the ELBO's KL term: analytic without flows, else the unbiased
        estimate KL(q0 || N(0, I)) + log N(z0; 0, I) - sum log|det| - log p(z)."""
        z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
        if self.posterior_flow is None and self.prior_flow is None:
            return z, kl
        correction = standard_log_density(z)
        if self.posterior_flow is not None:
            z, log_det = self.posterior_flow(z, h)
            correction = correction - log_det
        return z, kl + correction - self.log_prior(z)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Evidence lower bound per sample, in nats (one z sample; the KL analytic without flows)."""
        z, kl = self._sample_posterior(*self._posterior(x))
        return self.log_likelihood(x, z) - kl

    def iwae_bound(self, x: torch.Tensor, k: int = 64, chunk: int | None = None,
                   max_bytes: int | None = PASS_BYTES) -> torch.Tensor:
        """log (1/k) sum_i p(x, z_i) / q(z_i | x), per sample (k = 1 gives a sampled ELBO). The
        decoder runs ``chunk`` samples per pass, by default as many as keep its largest tensor
        within ``max_bytes`` (:func:`gaussian_iwae_bound`); the split does not change the result.
        With flows the weight is p(x|zK) p(zK) / q0(z0|x) * prod |det|: the Gaussian bound's
        N(z0; 0, I) / q0(z0|x) times p(zK) prod |det| / N(z0; 0, I), the correction added here."""
        h, mu, logvar = self._posterior(x)

        def log_px(z, kk):
            xs = x.repeat(kk, *[1] * (x.dim() - 1))
            if self.posterior_flow is None and self.prior_flow is None:
                return self.log_likelihood(xs, z)
            correction = -standard_log_density(z)
            if self.posterior_flow is not None:
                z, log_det = self.posterior_flow(z, h.repeat(kk, 1))
                correction = correction + log_det
            return self.log_likelihood(xs, z) + self.log_prior(z) + correction
        return gaussian_iwae_bound(mu, logvar, log_px, k, chunk, max_bytes)

    def loss(self, x: torch.Tensor, **cond) -> torch.Tensor:
        """Training objective to minimize: -(E log p(x|z) - beta KL), or the negative IWAE bound."""
        if self.k > 1:
            return -self.iwae_bound(x, self.k, chunk=self.k).mean()  # one pass
        z, kl = self._sample_posterior(*self._posterior(x))
        return -(self.log_likelihood(x, z) - kl_weight(self, kl.dtype) * kl).mean()

    @torch.no_grad()
    def nll(self, x: torch.Tensor, k: int = 1000) -> torch.Tensor:
        """Importance-weighted estimate of -log p(x) in nats per sample (an upper bound in expectation);
        the decoder's convolutions run channels-last meanwhile (:func:`mmgen.memory.channels_last_convolutions`)."""
        with channels_last_convolutions(self.decoder):
            return -self.iwae_bound(x, k)

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws from the model (``mean=True``: the likelihood's mean instead of a draw)."""
        device = self.heads.weight.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        if self.prior_flow is not None:
            z = self.prior_flow.inverse(z)[0]
        out = self.decoder(z)
        return self.likelihood.mean(out) if mean else self.likelihood.sample(out, generator=generator)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean at the posterior mean of z0 (through the posterior flow, if any)."""
        h, mu, _ = self._posterior(x)
        if self.posterior_flow is not None:
            mu = self.posterior_flow(mu, h)[0]
        return self.likelihood.mean(self.decoder(mu))
