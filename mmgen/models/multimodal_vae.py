"""What the multimodal VAEs (MVAE, MMVAE, MoPoE) share: one latent z for all modalities, one Gaussian
expert ``q_m(z | x_m)`` per modality, and a family-specific joint posterior ``q(z | x_S)`` for any
subset S of the modalities (a product of experts, a mixture, or a mixture of products).

Every modality has a plugin encoder (features -> a linear layer -> ``(mu, logvar)`` of its expert)
and a plugin decoder (``z`` -> a linear layer -> the decoder -> the modality's likelihood); see
:mod:`mmgen.models.modality` for the modality specs. The prior is ``p(z) = N(0, I)``.

Private latents (``private_dim`` > 0, the modality-specific subspaces of MMVAE+, Palumbo, Daunhawer &
Vogt, ICLR 2023; MMVAE with the option is MMVAE+, and MoPoE takes it too; MVAE does not): every
modality m also has its own latent ``u_m`` with
prior N(0, I) and posterior ``q(u_m | x_m)`` (the same encoder and head), and its decoder reads
``[z, u_m]``. Only z is shared: a modality generated from others gets ``u_m`` from its prior, so a
caption's z decodes to one image that fits it, not to the mean of all such images. In training, a
modality decoded from a z that it did not help infer gets ``u_m`` from the wide auxiliary prior
``N(0, private_scale^2 I)`` instead of its posterior, so that what the others can say must go
through z (MMVAE+'s auxiliary prior).

Shared API (also MFM's; :mod:`mmgen.eval.multimodal` relies on it): ``generate(source, x, targets)``
from any subset, ``sample(n)``, ``reconstruct(x)``, ``latent(x, modalities)``, ``log_prob(x, k=...,
given=..., targets=...)`` (IWAE, nats per example) and ``elbo(x)``.
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import nn

import mmgen
from mmgen.models.base import GenerativeModel, TrainingStep
from mmgen.models.modality import build_modality, check_subset, check_targets, encoder_view, infer_modalities
from mmgen.models.vae import gaussian_log_density, standard_log_density

def repeat_rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x`` [B, ...] stacked k times along dim 0 (rows ordered (copy, example))."""
    return x.repeat(k, *([1] * (x.dim() - 1)))


def importance_log_mean(log_w, k: int, chunk: int) -> torch.Tensor:
    """log (1/k) sum_i w_i per example, from ``log_w(kk)`` -> log-weights of kk fresh draws ``[kk * B]``
    (rows ordered (draw, example)), called for ``chunk`` draws at a time."""
    parts = [log_w(min(chunk, k - start)).view(min(chunk, k - start), -1) for start in range(0, k, chunk)]
    return torch.logsumexp(torch.cat(parts), 0) - math.log(k)


def product_of_experts(mus: list, logvars: list, prior: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian product of the experts ``N(mu_i, exp(logvar_i))`` (and of the prior expert
    N(0, I) with ``prior=True``): precision-weighted mean and the log of the summed precisions."""
    precision = torch.stack([torch.exp(-lv) for lv in logvars])
    weighted = torch.stack(mus) * precision
    total = precision.sum(0) + 1 if prior else precision.sum(0)
    return weighted.sum(0) / total, -torch.log(total)


class Posterior:
    """An equal-weight mixture of diagonal Gaussians ``components[i] = (mu [B, D], logvar [B, D])``
    (one component: a Gaussian)."""

    def __init__(self, components: list):
        self.components = components

    @property
    def mean(self) -> torch.Tensor:
        return torch.stack([mu for mu, _ in self.components]).mean(0)

    def sample(self, k: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` draws per example, ``[k * B, D]`` ordered (draw, example), by the fused
        ``mmgen.ops.reparameterize``; each row's component is drawn uniformly (stratified: the
        draws cycle through the components in a random order per example)."""
        mu = torch.stack([m for m, _ in self.components])  # [C, B, D]
        logvar = torch.stack([lv for _, lv in self.components])
        c, b = mu.shape[:2]
        if c == 1:
            which = torch.zeros(k, b, dtype=torch.long, device=mu.device)
        else:
            start = torch.randint(c, (b,), generator=generator, device=mu.device)
            which = (start.unsqueeze(0) + torch.arange(k, device=mu.device).unsqueeze(1)) % c  # [k, B]
        rows = torch.arange(b, device=mu.device).expand(k, b)
        chosen_mu, chosen_lv = mu[which, rows].reshape(k * b, -1), logvar[which, rows].reshape(k * b, -1)
        return mmgen.ops.reparameterize(chosen_mu, chosen_lv, generator=generator)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z) of ``z`` [k * B, D] (rows ordered (draw, example))."""
        k = len(z) // len(self.components[0][0])
        logs = torch.stack([gaussian_log_density(z, repeat_rows(mu, k), repeat_rows(lv, k))
                            for mu, lv in self.components])
        return torch.logsumexp(logs, 0) - math.log(len(self.components))


class MultimodalVAE(GenerativeModel):
    """Base of MVAE, MMVAE and MoPoE (see the module docs); subclasses define :meth:`posterior` and
    :meth:`loss`.

    Args:
        modalities: ``{name: modality spec}`` (:func:`mmgen.models.modality.build_modality`).
        latent_dim: size of z.
        beta: weight of the KL / prior term in the training objective (the reported bounds use 1).
    """

    multimodal = True
    family = "multimodal_vae"  # the registered short name (set by subclasses)

    def __init__(self, modalities: dict, latent_dim: int = 32, beta: float = 1.0, *, private_dim: int = 0,
                 private_scale: float = 1.0, **options):
        super().__init__()
        what = type(self).__name__
        if not isinstance(modalities, dict) or not modalities:
            raise ValueError(f"{what} needs a non-empty dict of modalities, got {modalities!r}")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"{what} latent_dim must be a positive int, got {latent_dim!r}")
        if not beta >= 0:
            raise ValueError(f"{what} beta must be >= 0, got {beta!r}")
        if isinstance(private_dim, bool) or not isinstance(private_dim, int) or private_dim < 0:
            raise ValueError(f"{what} private_dim must be an int >= 0, got {private_dim!r}")
        if isinstance(private_scale, bool) or not isinstance(private_scale, (int, float)) or not private_scale > 0:
            raise ValueError(f"{what} private_scale must be a number > 0, got {private_scale!r}")
        self.names = tuple(modalities)  # config.json keeps this order, so a reloaded model draws alike
        if "y" in self.names or "attributes" in self.names:
            raise ValueError(f"'y' and 'attributes' are label keys of a batch; they cannot name a modality, "
                             f"got {list(self.names)}")
        self.encoders, self.decoders = nn.ModuleDict(), nn.ModuleDict()
        self.expert_heads, self.latent_in = nn.ModuleDict(), nn.ModuleDict()
        self.heads, self.weights, self.options, specs = {}, {}, {}, {}
        for name in self.names:
            built = build_modality(name, modalities[name], what)
            self.encoders[name], self.decoders[name] = built.encoder, built.decoder
            self.heads[name], self.weights[name], self.options[name] = built.head, built.weight, built.options
            self.expert_heads[name] = nn.Linear(built.encoder.out_features, 2 * (latent_dim + private_dim))
            self.latent_in[name] = nn.Linear(latent_dim + private_dim, built.decoder.in_features)
            specs[name] = built.spec
        self.latent_dim, self.beta = latent_dim, float(beta)
        self.private_dim, self.private_scale = private_dim, float(private_scale)
        if private_dim:  # config.json of models without private latents stays as it was
            options = {**options, "private_dim": private_dim, "private_scale": self.private_scale}
        modules_given = any(spec is None for s in specs.values() for spec in (s["encoder"], s["decoder"]))
        self.config = {"model": self.family, "modalities": None if modules_given else specs,
                       "latent_dim": latent_dim, "beta": self.beta, **options}

    @classmethod
    def infer_config(cls, config: dict, info: dict) -> dict:
        """What the data gives (:mod:`mmgen.infer`), per modality: see
        :func:`mmgen.models.modality.infer_modality`."""
        return infer_modalities(config, info, cls.__name__)

    @property
    def device(self) -> torch.device:
        return next(iter(self.expert_heads.values())).weight.device

    # -- inference -----------------------------------------------------------------------------
    def subset(self, x: dict, modalities) -> tuple[str, ...]:
        """``modalities`` (a name, several, or None: those in ``x``) as a checked tuple."""
        return check_subset(self.names, x, modalities)

    def encoder_view(self, m: str, value: torch.Tensor) -> torch.Tensor:
        """What the encoder of m sees: integer levels scaled to [0, 1], other data as it is."""
        return encoder_view(self.heads[m], value)

    def encode(self, x: dict, modalities=None) -> tuple[dict, dict]:
        """``({m: (mu, logvar)} of the experts q_m(z | x_m), {m: (mu, logvar)} of the private
        posteriors q(u_m | x_m))`` of the modalities given (the second empty without private latents)."""
        shared, private = {}, {}
        for m in self.subset(x, modalities):
            params = self.expert_heads[m](self.encoders[m](self.encoder_view(m, x[m])))
            if self.private_dim:
                d, p = self.latent_dim, self.private_dim
                mu, logvar, private_mu, private_logvar = params.split([d, d, p, p], dim=1)
                shared[m], private[m] = (mu, logvar), (private_mu, private_logvar)
            else:
                shared[m] = params.chunk(2, dim=1)
        return shared, private

    def experts(self, x: dict, modalities=None) -> dict:
        """``{m: (mu, logvar)}`` of the unimodal experts q_m(z | x_m) of the modalities given."""
        return self.encode(x, modalities)[0]

    def prior_private(self, n: int, generator: torch.Generator | None = None, scale: float = 1.0,
                      mean: bool = False) -> torch.Tensor:
        """n draws of u from N(0, scale^2 I), ``[n, private_dim]`` (``mean=True``: zeros)."""
        if mean:
            return torch.zeros(n, self.private_dim, device=self.device)
        return scale * torch.randn(n, self.private_dim, generator=generator, device=self.device)

    def posterior(self, x: dict, modalities=None) -> Posterior:
        """q(z | x_S) of the subset S = ``modalities`` (default: every modality in ``x``)."""
        return self.posterior_of(self.experts(x, modalities))

    def posterior_of(self, experts: dict) -> Posterior:
        """q(z | x_S) from the experts ``{m: (mu, logvar)}`` of S (the family's joint posterior)."""
        raise NotImplementedError

    def latent(self, x: dict, modalities=None) -> torch.Tensor:
        """The posterior mean E q(z | x_S), ``[B, latent_dim]``."""
        return self.posterior(x, modalities).mean

    # -- generation ----------------------------------------------------------------------------
    def decode(self, m: str, z: torch.Tensor) -> torch.Tensor:
        """The decoder input of modality m for latents z (before the plugin decoder); with private
        latents z is ``[z, u_m]``, ``[N, latent_dim + private_dim]``."""
        return self.latent_in[m](z)

    def with_private(self, z: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """``[z, u]`` with private latents, z alone without."""
        return z if u is None else torch.cat([z, u], dim=1)

    def log_likelihood(self, m: str, z: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """log p(x_m | z) per row (nats)."""
        return self.heads[m].log_prob(self.decode(m, z), value)

    def _decode_all(self, z: torch.Tensor, targets, generator, sample: bool, private: dict | None = None) -> dict:
        """Each target decoded from z (and its ``private[m]`` u; without one, u from its prior:
        ``private=None`` draws it, a dict without m takes the prior mean)."""
        out = {}
        for m in targets:
            u = None
            if self.private_dim:
                u = private[m] if private is not None and m in private else \
                    self.prior_private(len(z), generator, mean=private is not None)
            out[m] = self.heads[m].generate(self.decode(m, self.with_private(z, u)), generator=generator, sample=sample)
        return out

    @torch.no_grad()
    def generate(self, source, x: dict, targets=None, *, generator: torch.Generator | None = None,
                 sample: bool = False, latent: str = "sample") -> dict:
        """Cross-modal generation: z from q(z | x_source) (``latent="sample"``: one draw, as in the
        papers' coherence tests; ``"mean"``: the posterior mean), each target decoded to its
        likelihood mean (``sample=True``: a draw; tokens: greedy or sampled). ``targets`` default:
        the modalities not in ``source``."""
        sources = self.subset(x, source)
        targets = check_targets(self.names, targets, [m for m in self.names if m not in sources])
        if latent not in ("sample", "mean"):
            raise ValueError(f"latent must be 'sample' or 'mean', got {latent!r}")
        experts, own = self.encode(x, sources)
        post = self.posterior_of(experts)
        z = post.sample(1, generator) if latent == "sample" else post.mean
        private = None
        if self.private_dim:  # a reconstructed source's own u from its posterior, the others' from the prior
            private = {m: mu if latent == "mean" else mmgen.ops.reparameterize(mu, lv, generator=generator)
                       for m, (mu, lv) in own.items() if m in targets}
            if latent == "sample":
                private.update({m: self.prior_private(len(z), generator) for m in targets if m not in private})
        return self._decode_all(z, targets, generator, sample, private)

    @torch.no_grad()
    def reconstruct(self, x: dict, modalities=None, targets=None) -> dict:
        """``targets`` (default: every modality) decoded (likelihood means) at the posterior mean
        from ``modalities`` (default: every modality in ``x``)."""
        return self.generate(self.subset(x, modalities), x, list(self.names) if targets is None else targets,
                             latent="mean")

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, mean: bool = True) -> dict:
        """n joint draws: z ~ N(0, I), every modality decoded (``mean=True``: likelihood means and
        greedy tokens, else draws)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        private = {m: self.prior_private(n, generator) for m in self.names} if self.private_dim else None
        return self._decode_all(z, self.names, generator, not mean, private)

    def write_samples(self, path_prefix: str, n: int, generator: torch.Generator | None = None,
                      data=None) -> list[str]:
        """Write ``n`` joint samples (``PREFIX-<modality>.png|wav|txt``) and, with ``data`` (a
        multimodal dataset), its first n examples (``PREFIX-real-*``) and, for each modality s, the
        others generated from s alone (``PREFIX-from_<s>-*``). Returns the paths written."""
        from mmgen.models.mfm_samples import write_model_samples
        return write_model_samples(self, path_prefix, lambda: (self.sample(n, generator=generator), None), data, n,
                                   cross_generator=generator)

    # -- likelihoods ---------------------------------------------------------------------------
    @torch.no_grad()
    def log_prob(self, x: dict, *, k: int = 100, given=None, targets=None, chunk: int = 50,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance-weighted estimate (k samples, nats per example) of log p(x_T) with
        ``given=None`` (z ~ q(z | x_T), weights p(x_T | z) p(z) / q(z | x_T)), or of the conditional
        log p(x_T | x_S) for ``given=S`` (z ~ q(z | x_S) standing in for p(z | x_S): log of the mean
        of p(x_T | z)). ``targets`` T default: every modality (not in S)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        given = None if given is None else self.subset(x, given)
        targets = check_targets(self.names, targets, [m for m in self.names if given is None or m not in given])
        self.subset(x, targets)
        experts, own = self.encode(x, targets if given is None else given)
        post = self.posterior_of(experts)
        if given is not None:
            own = {}  # the conditional: u_m from its prior

        def log_w(kk: int) -> torch.Tensor:
            z = post.sample(kk, generator)
            lw, private_w = 0, 0
            for m in targets:
                u = None
                if m in own:  # the joint bound: u_m ~ q(u_m | x_m), weighted by p(u_m) / q(u_m | x_m)
                    mu, lv = repeat_rows(own[m][0], kk), repeat_rows(own[m][1], kk)
                    u = mmgen.ops.reparameterize(mu, lv, generator=generator)
                    private_w = private_w + standard_log_density(u) - gaussian_log_density(u, mu, lv)
                elif self.private_dim:  # conditional: u_m ~ p(u_m), independent of the givens
                    u = self.prior_private(len(z), generator)
                lw = lw + self.log_likelihood(m, self.with_private(z, u), repeat_rows(x[m], kk))
            if given is None:
                lw = lw + standard_log_density(z) - post.log_prob(z)
            return lw + private_w if own else lw
        return importance_log_mean(log_w, k, chunk)

    @torch.no_grad()
    def elbo(self, x: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """A one-sample estimate of the joint ELBO E_q[log p(x | z) + log p(z) - log q(z | x)] (nats
        per example; the families' posteriors are mixtures, whose KL has no closed form)."""
        return self.log_prob(x, k=1, generator=generator)

    # -- training helpers ----------------------------------------------------------------------
    def training_steps(self) -> list[TrainingStep]:
        """One optimizer over all parameters; the trainer hands the whole batch dict to ``loss``."""
        return [TrainingStep("model", list(self.parameters()), self.loss)]

    def reconstruction(self, x: dict, z: torch.Tensor, modalities, private: dict | None = None) -> torch.Tensor:
        """sum over ``modalities`` of weight_m * log p(x_m | z), per row (with private latents:
        log p(x_m | [z, private[m]]))."""
        return sum(self.weights[m] * self.log_likelihood(m, self.with_private(z, None if private is None else private[m]),
                                                         x[m]) for m in modalities)

    def check_batch(self, x: dict) -> None:
        missing = [m for m in self.names if m not in x]
        if missing:
            raise ValueError(f"{type(self).__name__} training batches need every modality; missing {missing} "
                             f"(have {sorted(x)})")

    def all_subsets(self, modalities=None) -> list[tuple[str, ...]]:
        """Every non-empty subset of ``modalities`` (default: all), smallest first."""
        names = self.names if modalities is None else tuple(modalities)
        return [s for r in range(1, len(names) + 1) for s in itertools.combinations(names, r)]
