"""Multimodal Factorization Model (Tsai et al., "Learning Factorized Multimodal Representations", ICLR 2019).

Factors: a joint discriminative factor ``z_y`` shared by all modalities and one generative factor
``z_a_i`` per modality.

- inference: every modality has a plugin encoder ``E_i`` giving features ``h_i``; ``q(z_a_i | x_i)``
  is a Gaussian head on ``h_i``; the fusion encoder averages ``relu(P_i h_i)`` over the modalities
  present and maps the mean to ``q(z_y | x_present)`` (so one network also serves any subset);
- generation: ``x_i ~ p(x_i | F_i(G_a_i(z_a_i), G_y(z_y)))`` with ``F_i`` = a linear layer into the
  plugin decoder of modality i; the label is predicted by ``D(G_y(z_y))``;
- loss per example: ``sum_i w_i * -log p(x_i | ...) + label_weight * CE(y, D(G_y(z_y)))
  + lam * prior``, where ``prior`` is the KL of every factor to N(0, I) (``prior="kl"``: z sampled
  with the fused ``mmgen.ops.reparameterize(..., return_kl=True)``), or the maximum mean discrepancy
  between the batch of factors and N(0, I) samples (``prior="mmd"``, deterministic encoders as in the
  authors' code; kernel ``exp(-||a - b||^2 / dim^2)``);
- missing modalities (surrogate inference): on every training batch, for each non-empty proper
  subset of the modalities, the fusion encoder's ``q(z_y | subset)`` is trained to predict the label
  (``label_weight``) and to match the mean of ``q(z_y | all)`` (``surrogate_weight`` * squared
  distance, the full posterior held fixed); the terms are averaged over the subsets. ``predict(x,
  modalities=...)`` and ``generate(source, x, targets)`` infer ``z_y`` from whatever is given;
  factors of absent modalities take their prior mean (0), or a prior draw with a generator.

Batches are dicts ``{modality: tensor, ..., "y": labels}`` (:class:`mmgen.data.multimodal.MultimodalDataset`).
A modality with ``"likelihood": "tokens"`` is a token sequence (LongTensor [B, T], <bos> ... <eos>
<pad>...) decoded by a teacher-forced language model such as ``text.gru`` (``decoder(h, tokens)``
-> next-token logits, ``decoder.generate(h)``).
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

import mmgen
from mmgen.models.base import GenerativeModel, TrainingStep
from mmgen.models.modality import build_modality, check_subset, check_targets, encoder_view, infer_modalities

PRIORS = ("kl", "mmd")


class MFMLoss(NamedTuple):
    """Batch means of the terms (nats per example, prior as weighted in ``total``)."""

    total: torch.Tensor
    reconstruction: dict
    label: torch.Tensor
    prior: torch.Tensor
    surrogate: torch.Tensor


def mmd_to_standard_normal(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """MMD^2 between the rows of z [B, D] and as many N(0, I) draws, kernel exp(-||a - b||^2 / D^2)."""
    prior = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    scale = float(z.shape[1]) ** 2

    def kernel(a, b):
        return torch.exp(-(a.unsqueeze(1) - b.unsqueeze(0)).square().sum(2) / scale).mean()

    return kernel(z, z) + kernel(prior, prior) - 2 * kernel(z, prior)


class MFM(GenerativeModel):
    """Multimodal Factorization Model over any set of modalities (see the module docs).

    Args:
        modalities: ``{name: {"encoder": spec|module, "decoder": spec|module, "likelihood": ...,
            "weight": 1.0}}``. The encoder needs ``out_features``, the decoder ``in_features`` (any
            size: ``F_i`` projects into it). ``likelihood``: "bernoulli", "gaussian",
            {"name": "categorical", "levels": L} or "tokens". Optional: ``"wave"`` (the ``LogMel``
            options of log-mel data, plus the ``mean`` and ``std`` it was standardized with:
            ``write_samples`` and pocketsphinx turn it into sound), ``"vocabulary"`` (token strings:
            ``write_samples`` writes text), ``"max_length"`` (generated tokens, default 32).
        num_classes: labels are 0 .. num_classes - 1; 0 trains without labels: no label head D,
            no label term, the surrogate terms only match the full posterior's mean, and
            ``predict`` / ``sample(y=...)`` are not available (``has_label_head`` is False).
        zy_dim, za_dim: sizes of the joint and of each modality-specific factor.
        hidden: width of the fusion input and of G_y and G_a (D is linear on G_y(z_y)).
        prior: "kl" or "mmd"; lam: its weight. label_weight, surrogate_weight: see the module docs.
    """

    multimodal = True  # batches are dicts of modalities (runs and evaluation dispatch on this)

    def __init__(self, modalities: dict, num_classes: int = 10, zy_dim: int = 16, za_dim: int = 8,
                 hidden: int = 128, prior: str = "kl", lam: float = 1.0, label_weight: float = 1.0,
                 surrogate_weight: float = 1.0):
        super().__init__()
        if not isinstance(modalities, dict) or not modalities:
            raise ValueError(f"MFM needs a non-empty dict of modalities, got {modalities!r}")
        if prior not in PRIORS:
            raise ValueError(f"MFM prior must be one of {PRIORS}, got {prior!r}")
        if num_classes == 1 or num_classes < 0 or min(zy_dim, za_dim, hidden) < 1 or min(lam, label_weight, surrogate_weight) < 0:
            raise ValueError(f"MFM needs num_classes >= 2 (or 0: no labels), positive sizes and non-negative weights, got "
                             f"num_classes={num_classes}, zy_dim={zy_dim}, za_dim={za_dim}, hidden={hidden}, "
                             f"lam={lam}, label_weight={label_weight}, surrogate_weight={surrogate_weight}")
        self.names = tuple(modalities)
        if "y" in self.names:
            raise ValueError("'y' is the label key of a batch; it cannot name a modality")
        self.encoders, self.decoders = nn.ModuleDict(), nn.ModuleDict()
        self.za_heads, self.fusion_in, self.gen_a, self.combine = (nn.ModuleDict() for _ in range(4))
        self.heads, self.weights, self.options, specs = {}, {}, {}, {}
        for name, spec in modalities.items():
            specs[name] = self._add_modality(name, spec, za_dim, hidden)
        self.fusion = nn.Linear(hidden, 2 * zy_dim)
        self.gen_y = nn.Sequential(nn.Linear(zy_dim, hidden), nn.ReLU())
        self.has_label_head = num_classes > 0
        self.classifier = nn.Linear(hidden, num_classes) if self.has_label_head else None
        self.register_buffer("class_means", torch.zeros(num_classes, zy_dim))  # running mean of E q(z_y|x)
        self.num_classes, self.zy_dim, self.za_dim, self.hidden = num_classes, zy_dim, za_dim, hidden
        self.prior, self.lam = prior, float(lam)
        self.label_weight, self.surrogate_weight = float(label_weight), float(surrogate_weight)
        self.subsets = [s for r in range(1, len(self.names)) for s in itertools.combinations(self.names, r)]
        modules_given = any(spec is None for s in specs.values() for spec in (s["encoder"], s["decoder"]))
        self.config = {"model": "mfm", "modalities": None if modules_given else specs,
                       "num_classes": num_classes, "zy_dim": zy_dim, "za_dim": za_dim, "hidden": hidden,
                       "prior": prior, "lam": self.lam, "label_weight": self.label_weight,
                       "surrogate_weight": self.surrogate_weight}

    @classmethod
    def infer_config(cls, config: dict, info: dict) -> dict:
        """What the data gives (:mod:`mmgen.infer`): ``num_classes`` (unless the config says 0: no
        labels); for each modality m, from the data's entry m, what
        :func:`mmgen.models.modality.infer_modality` fills in."""
        from mmgen.infer import fill_value
        if config.get("num_classes") != 0:
            fill_value(config, "num_classes", info.get("num_classes"), "MFM")
        return infer_modalities(config, info, "MFM")

    def _add_modality(self, name: str, spec: dict, za_dim: int, hidden: int) -> dict:
        built = build_modality(name, spec, "MFM")
        self.encoders[name], self.decoders[name] = built.encoder, built.decoder
        self.heads[name], self.weights[name], self.options[name] = built.head, built.weight, built.options
        self.za_heads[name] = nn.Linear(built.encoder.out_features, 2 * za_dim)
        self.fusion_in[name] = nn.Linear(built.encoder.out_features, hidden)
        self.gen_a[name] = nn.Sequential(nn.Linear(za_dim, hidden), nn.ReLU())
        self.combine[name] = nn.Linear(2 * hidden, built.decoder.in_features)
        return built.spec

    # -- inference -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.fusion.weight.device

    def _present(self, x: dict, modalities) -> tuple[str, ...]:
        return check_subset(self.names, x, modalities)

    def encoder_view(self, m: str, value: torch.Tensor) -> torch.Tensor:
        """What the encoder of m sees: integer levels scaled to [0, 1], other data as it is."""
        return encoder_view(self.heads[m], value)

    def features(self, x: dict, modalities=None) -> dict:
        """Encoder features h_i of the modalities given (all of ``x``'s by default)."""
        return {m: self.encoders[m](self.encoder_view(m, x[m])) for m in self._present(x, modalities)}

    def fuse(self, h: dict, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z_y | ...) parameters from features ``h`` (all names in h), averaged over the modalities
        present; ``mask[B, len(h)]`` (1 = present) selects a subset per example."""
        proj = torch.stack([F.relu(self.fusion_in[m](h[m])) for m in h])  # [M, B, hidden]
        if mask is None:
            pooled = proj.mean(0)
        else:
            weights = mask.t().unsqueeze(2).to(proj.dtype)
            pooled = (proj * weights).sum(0) / weights.sum(0).clamp(min=1)
        return self.fusion(pooled).chunk(2, dim=1)

    def presence(self, x: dict, names) -> torch.Tensor | None:
        """``[B, len(names)]`` bool: which of ``names`` each row has, from the batch's ``"<m>_mask"``
        fields (True = present; a modality without one is present in every row); None when the batch
        has no mask of these modalities (every row has every modality)."""
        masks = [x.get(f"{m}_mask") for m in names]
        if all(mask is None for mask in masks):
            return None
        rows = next(len(mask) for mask in masks if mask is not None)
        return torch.stack([torch.ones(rows, dtype=torch.bool, device=self.device) if mask is None
                            else mask.to(self.device, torch.bool) for mask in masks], 1)

    def encode(self, x: dict, modalities=None) -> dict:
        """Posterior parameters ``{"y": (mu, logvar), m: (mu, logvar) for each modality given}``;
        with ``"<m>_mask"`` fields in ``x``, q(z_y) of each row fuses only the modalities it has."""
        h = self.features(x, modalities)
        out = {"y": self.fuse(h, mask=self.presence(x, tuple(h)))}
        out.update({m: self.za_heads[m](h[m]).chunk(2, dim=1) for m in h})
        return out

    def _need_label_head(self, what: str) -> None:
        if not self.has_label_head:
            raise ValueError(f"{what} needs the label head; this MFM was built with num_classes=0 (no labels)")

    def logits(self, x: dict, modalities=None) -> torch.Tensor:
        """Label logits D(G_y(E[z_y | the given modalities]))."""
        self._need_label_head("MFM.logits / predict")
        return self.classifier(self.gen_y(self.encode(x, modalities)["y"][0]))

    @torch.no_grad()
    def predict(self, x: dict, modalities=None) -> torch.Tensor:
        """Predicted labels from the given modalities (default: all in ``x``); any subset works."""
        return self.logits(x, modalities).argmax(1)

    def latent(self, x: dict, modalities=None) -> torch.Tensor:
        """Posterior means from the given modalities: E q(z_y | x_S) and E q(z_a_m | x_m) for each m
        in S, concatenated, ``[B, zy_dim + |S| * za_dim]``."""
        post = self.encode(x, modalities)
        return torch.cat([post["y"][0], *[post[m][0] for m in self._present(x, modalities)]], 1)

    @torch.no_grad()
    def log_prob(self, x: dict, *, k: int = 100, given=None, targets=None, chunk: int = 50,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance-weighted estimate (k samples, nats per example) of log p(x_T), or with
        ``given=S`` of log p(x_T | x_S): z_y ~ q(z_y | x_T) (joint) or q(z_y | x_S) (conditional,
        standing in for p(z_y | x_S)), z_a_t ~ q(z_a_t | x_t) for each target t, weights
        p(x_T | z) p(z) / q(z) over the factors drawn from the target's own posterior. ``targets``
        default: every modality (not in S). Needs ``prior="kl"`` (Gaussian posteriors)."""
        from mmgen.models.multimodal_vae import importance_log_mean, repeat_rows
        from mmgen.models.vae import gaussian_log_density, standard_log_density
        if self.prior != "kl":
            raise ValueError("MFM.log_prob needs prior='kl': with prior='mmd' the encoders are deterministic")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        given = None if given is None else ((given,) if isinstance(given, str) else tuple(given))
        targets = check_targets(self.names, targets, [m for m in self.names if given is None or m not in given])
        self._present(x, targets)
        post = self.encode(x, targets)
        mu_y, logvar_y = post["y"] if given is None else self.encode(x, given)["y"]

        def log_w(kk: int) -> torch.Tensor:
            m_y, lv_y = repeat_rows(mu_y, kk), repeat_rows(logvar_y, kk)
            z_y = mmgen.ops.reparameterize(m_y, lv_y, generator=generator)
            lw = 0.0 if given is not None else standard_log_density(z_y) - gaussian_log_density(z_y, m_y, lv_y)
            for t in targets:
                m_a, lv_a = repeat_rows(post[t][0], kk), repeat_rows(post[t][1], kk)
                z_a = mmgen.ops.reparameterize(m_a, lv_a, generator=generator)
                lw = lw + standard_log_density(z_a) - gaussian_log_density(z_a, m_a, lv_a)
                lw = lw + self.heads[t].log_prob(self.decode(t, z_y, z_a), repeat_rows(x[t], kk))
            return lw
        return importance_log_mean(log_w, k, chunk)

    @torch.no_grad()
    def elbo(self, x: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """A one-sample estimate of the joint ELBO (nats per example; the label term not included)."""
        return self.log_prob(x, k=1, generator=generator)

    # -- generation ----------------------------------------------------------------------------
    def decode(self, m: str, z_y: torch.Tensor, z_a: torch.Tensor) -> torch.Tensor:
        """Decoder input of modality m: F_m(G_a_m(z_a), G_y(z_y)) before the plugin decoder."""
        return self.combine[m](torch.cat([self.gen_a[m](z_a), self.gen_y(z_y)], 1))

    def _prior_factor(self, n: int, generator) -> torch.Tensor:
        if generator is None:
            return torch.zeros(n, self.za_dim, device=self.device)
        return torch.randn(n, self.za_dim, generator=generator, device=self.device)

    @torch.no_grad()
    def generate(self, source, x: dict, targets=None, *, generator: torch.Generator | None = None,
                 sample: bool = False) -> dict:
        """Cross-modal generation: infer z_y from the ``source`` modality (a name or several) of
        batch ``x`` and decode ``targets`` (default: every other modality). Targets that are not in
        the source get z_a = 0 (the prior mean), or a prior draw when ``generator`` is given.
        Returns ``{target: likelihood mean (or a draw with sample=True); tokens for text}``."""
        sources = (source,) if isinstance(source, str) else tuple(source)
        post = self.encode(x, sources)
        targets = check_targets(self.names, targets, [m for m in self.names if m not in sources])
        z_y = post["y"][0]
        out = {}
        for m in targets:
            z_a = post[m][0] if m in post else self._prior_factor(len(z_y), generator)
            if m in post and x.get(f"{m}_mask") is not None:  # rows without m: its prior, as for a target
                z_a = torch.where(x[f"{m}_mask"].to(z_a.device, torch.bool).unsqueeze(1), z_a,
                                  self._prior_factor(len(z_y), generator))
            out[m] = self.heads[m].generate(self.decode(m, z_y, z_a), generator=generator, sample=sample)
        return out

    @torch.no_grad()
    def reconstruct(self, x: dict, modalities=None, targets=None) -> dict:
        """``targets`` (default: every modality) decoded at the posterior means inferred from
        ``modalities`` (default all)."""
        present = self._present(x, modalities)
        return self.generate(present, x, targets=list(self.names) if targets is None else targets)

    @torch.no_grad()
    def sample(self, n: int, *, y=None, generator: torch.Generator | None = None, mean: bool = True) -> dict:
        """n draws of every modality: z_a ~ N(0, I); z_y ~ N(0, I), or with labels ``y`` (an int or a
        LongTensor[n]) the running mean of q(z_y | x) over training examples of that label.
        ``mean=True`` returns likelihood means (greedy tokens), else draws."""
        z_a = {m: torch.randn(n, self.za_dim, generator=generator, device=self.device) for m in self.names}
        if y is None:
            z_y = torch.randn(n, self.zy_dim, generator=generator, device=self.device)
        else:
            self._need_label_head("MFM.sample(y=...)")
            labels = torch.as_tensor(y, device=self.device).long().expand(n) if isinstance(y, int) else \
                torch.as_tensor(y, device=self.device).long()
            if labels.shape != (n,) or labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"y must be an int or {n} labels in [0, {self.num_classes}), got {y!r}")
            z_y = self.class_means[labels]
        return {m: self.heads[m].generate(self.decode(m, z_y, z_a[m]), generator=generator, sample=not mean)
                for m in self.names}

    def write_samples(self, path_prefix: str, n: int, generator: torch.Generator | None = None,
                      data=None) -> list[str]:
        """Write ``n`` samples with labels cycling 0, 1, ... (``PREFIX-<modality>.png|wav|txt``: PNG
        grid of images, one WAV of log-mels with ``wave`` options, clips in order 0.2 s apart, text
        lines of tokens with a ``vocabulary``). With ``data`` (a multimodal dataset) also the first
        n examples (``PREFIX-real-*``) and, for each modality s, the others generated from s alone
        (``PREFIX-from_<s>-*``). Returns the paths written."""
        from mmgen.models.mfm_samples import write_model_samples
        labels = torch.arange(n, device=self.device) % max(self.num_classes, 1)

        def draw():
            samples = self.sample(n, y=labels if self.has_label_head else None, generator=generator)
            return samples, labels.cpu() if self.has_label_head else None
        return write_model_samples(self, path_prefix, draw, data, n)

    # -- training ------------------------------------------------------------------------------
    def _factor(self, mu, logvar):
        """(z, prior term per example or for the batch) for the selected prior."""
        if self.prior == "kl":
            return mmgen.ops.reparameterize(mu, logvar, return_kl=True)
        return mu, mmd_to_standard_normal(mu)

    def loss_terms(self, x: dict, y: torch.Tensor | None = None) -> MFMLoss:
        """All terms of the objective on a batch dict holding every modality (and ``"y"``).

        Rows missing a modality: the batch holds ``"<m>_mask"`` (bool [B], True = present) and any
        value (zeros) in the absent rows of ``x[m]``. Then only what a row has counts: its q(z_y)
        fuses the modalities present; m's reconstruction and z_a prior terms count in the rows that
        have m; a modality subset's surrogate terms count in the rows that have every modality of
        the subset. Terms are summed per row and divided by the batch size (rows, not present rows:
        the loss per example is the objective of what the example holds; without masks this is the
        plain batch mean). The reported ``reconstruction[m]`` is the mean over the rows that have m.
        """
        y = x.get("y") if y is None else y
        if y is None and self.has_label_head:
            raise ValueError("MFM.loss needs labels: a batch dict with 'y' or y=... (or num_classes=0: no labels)")
        missing = [m for m in self.names if m not in x]
        if missing:
            raise ValueError(f"MFM training batches need every modality; missing {missing} (have {sorted(x)})")
        present = self.presence(x, self.names)  # None: every row has every modality
        h = self.features(x)
        mu_y, logvar_y = self.fuse(h, mask=present)
        z_y, prior = self._factor(mu_y, logvar_y)
        g_y = self.gen_y(z_y)
        recon = {}
        for i, m in enumerate(self.names):
            has = None if present is None else present[:, i]
            mu_a, logvar_a = self.za_heads[m](h[m]).chunk(2, dim=1)
            if has is not None and self.prior == "mmd":  # the batch statistic over the rows that have m
                z_a, prior_a = mu_a, (mmd_to_standard_normal(mu_a[has]) if has.any() else mu_a.new_zeros(()))
            else:
                z_a, prior_a = self._factor(mu_a, logvar_a)
                if has is not None:
                    prior_a = torch.where(has, prior_a, torch.zeros_like(prior_a))
            prior = prior + prior_a
            h_dec = self.combine[m](torch.cat([self.gen_a[m](z_a), g_y], 1))
            recon[m] = -self.heads[m].log_prob(h_dec, x[m])
            if has is not None:
                recon[m] = torch.where(has, recon[m], torch.zeros_like(recon[m]))
        label = (F.cross_entropy(self.classifier(g_y), y, reduction="none") if self.has_label_head
                 else mu_y.new_zeros(len(mu_y)))
        surrogate = torch.zeros((), device=mu_y.device)
        for subset in self.subsets:
            mask = torch.tensor([m in subset for m in self.names], device=mu_y.device).expand(len(mu_y), -1)
            mu_sub, logvar_sub = self.fuse(h, mask=mask)
            z_sub = mmgen.ops.reparameterize(mu_sub, logvar_sub) if self.prior == "kl" else mu_sub
            term = self.surrogate_weight * (mu_sub - mu_y.detach()).square().sum(1)
            if self.has_label_head:
                term = term + self.label_weight * F.cross_entropy(self.classifier(self.gen_y(z_sub)), y,
                                                                  reduction="none")
            if present is not None:  # rows that have every modality of the subset
                term = torch.where((present | ~mask).all(1), term, torch.zeros_like(term))
            surrogate = surrogate + term.mean() / len(self.subsets)
        if self.training and self.has_label_head:
            self._track_class_means(mu_y.detach(), y)
        recon_total = sum(self.weights[m] * recon[m] for m in self.names).mean()
        prior_total = self.lam * prior.mean()
        label_total = self.label_weight * label.mean()
        total = recon_total + label_total + prior_total + surrogate
        if present is None:
            reported = {m: r.mean() for m, r in recon.items()}
        else:
            counts = present.sum(0).clamp(min=1)
            reported = {m: recon[m].sum() / counts[i] for i, m in enumerate(self.names)}
        return MFMLoss(total, reported, label.mean(), prior_total, surrogate)

    def loss(self, x: dict, y: torch.Tensor | None = None) -> torch.Tensor:
        """The training objective (scalar) on a batch dict ``{modality: tensor, ..., "y": labels}``."""
        return self.loss_terms(x, y).total

    def training_steps(self) -> list[TrainingStep]:
        """One optimizer over all parameters; the trainer hands the whole batch dict to ``loss``."""
        return [TrainingStep("model", list(self.parameters()), self.loss)]

    @torch.no_grad()
    def _track_class_means(self, mu: torch.Tensor, y: torch.Tensor, momentum: float = 0.05) -> None:
        for c in torch.unique(y).tolist():
            if 0 <= c < self.num_classes:
                self.class_means[c].lerp_(mu[y == c].mean(0), momentum)
