"""Conditional VAE p(x | c) for a class label or a caption (Sohn et al. 2015)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import mmgen
from mmgen.models.base import GenerativeModel, component
from mmgen.models.vae import encoder_input, make_likelihood, standard_log_density
from mmgen.nn.labels import class_labels
from mmgen.nn.text_condition import TextEmbedder, make_tokenizer


class CVAE(GenerativeModel):
    """q(z | x, c) = N(mu, diag exp(logvar)) from the encoder's features and the condition vector c;
    p(x | z, c) from the decoder fed ``[z, c]``; p(z) = N(0, I). The condition ``y`` is either a class
    label (``num_classes``; c = one_hot(y)) or a caption (``text_encoder``; c = its text embedding,
    e.g. the frozen MiniLM's or a GRU trained with the model).

    ``condition_on_labels = True``: the trainer and ``mmgen.eval`` pass the batch's
    ``condition_key`` field as ``y``: the labels ("y"), or the captions ("captions") of a captioned
    dataset such as ``mnist-captions``.

    Args:
        encoder: module or spec with ``out_features`` (reads x only; c joins at the Gaussian heads).
        decoder: module or spec with ``in_features == latent_dim + condition size`` (num_classes, or
            the text encoder's out_features).
        num_classes: labels lie in ``[0, num_classes)`` (not used with ``text_encoder``).
        latent_dim: size of z.
        likelihood: "bernoulli", "gaussian" or {"name": "categorical", "levels": L}.
        beta: weight of the KL term in the training loss; the ELBO always uses 1.
        text_encoder: a "text_encoder" spec (``{"name": "text.minilm"}``, ``{"name": "text.gru",
            "out_features": 64}``) to condition on captions instead of labels.
        vocab: for text encoders of token ids: a token list or a captioned dataset name
            ("mnist-captions") whose caption words make the vocabulary (saved as a list).
        prompts: captions that ``sample(n)`` cycles through when given none (default: the example
            prompts of the dataset that ``vocab`` names).
    """

    condition_on_labels = True

    data_components = {"encoder": "encoder", "decoder": "decoder"}  # built on the data (mmgen.infer)

    @classmethod
    def infer_config(cls, config: dict, info: dict) -> dict:
        """:func:`mmgen.infer.infer_from_declarations`, and ``num_classes`` from the data unless the
        model is conditioned on captions; a caption CVAE without ``vocab`` takes the captions'."""
        from mmgen.infer import fill_caption_vocabulary, fill_value, infer_from_declarations
        config = infer_from_declarations(cls, config, info)
        if config.get("text_encoder") is None:
            fill_value(config, "num_classes", info.get("num_classes"), cls.__name__)
        return fill_caption_vocabulary(config, info)

    def __init__(self, encoder, decoder, num_classes: int = 10, latent_dim: int = 16,
                 likelihood="bernoulli", beta: float = 1.0, text_encoder: dict | None = None,
                 vocab: list[str] | str | None = None, prompts: list[str] | None = None):
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
        if text_encoder is not None and type(self) is not CVAE:
            raise ValueError(f"{name} conditions on class labels only; text_encoder is for CVAE")
        self.text = None
        if text_encoder is not None:
            tokenizer = make_tokenizer(vocab)
            self.text = TextEmbedder(text_encoder, tokenizer, what=f"{name} text_encoder")
            cond_size, what = self.text.out_features, "text embedding: latent_dim + text_encoder.out_features"
        elif not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"{name}: num_classes must be an int >= 2, got {num_classes!r}")
        else:
            cond_size, what = num_classes, "one_hot(y): latent_dim + num_classes"
        if self.decoder.in_features != latent_dim + cond_size:
            raise ValueError(f"{name} decoder takes in_features={self.decoder.in_features} but it is fed "
                             f"[z, {what} = {latent_dim + cond_size}]")
        if beta < 0:
            raise ValueError(f"{name} needs beta >= 0, got {beta}")
        self.heads = nn.Linear(self.encoder.out_features + cond_size, 2 * latent_dim)
        self.num_classes = num_classes if self.text is None else None
        self.latent_dim, self.beta = latent_dim, float(beta)
        self.condition_key = "y" if self.text is None else "captions"
        self.config = {"model": "cvae", "encoder": enc_spec, "decoder": dec_spec, "latent_dim": latent_dim,
                       "likelihood": lik_spec, "beta": self.beta}
        if self.text is None:
            self.config["num_classes"] = num_classes
        else:
            self.config["text_encoder"] = text_encoder
            if self.text.tokenizer is not None:
                self.config["vocab"] = self.text.tokenizer.vocab
            if prompts is None and isinstance(vocab, str):
                from mmgen.data import captions
                prompts = captions.example_prompts(vocab)
            if prompts is not None:
                self.config["prompts"] = list(prompts)
        self.prompts = self.config.get("prompts")

    def condition(self, y, batch: int) -> torch.Tensor:
        """The condition vectors ``[batch, C]``: one_hot of labels ``[batch]`` (or one int), or the text
        embeddings of ``batch`` captions (or one caption for all)."""
        if self.text is None:
            return self.one_hot(y, batch)
        captions = [y] * batch if isinstance(y, str) else y
        if not isinstance(captions, (list, tuple)) or len(captions) != batch:
            raise ValueError(f"{type(self).__name__}: y must be one caption or a list of {batch} captions, "
                             f"got {y!r:.200}")
        return self.text(list(captions)).to(self.heads.weight)

    def one_hot(self, y, batch: int) -> torch.Tensor:
        """One-hot ``[batch, num_classes]`` of labels ``[batch]`` (or one int for the whole batch)."""
        if self.text is not None:
            raise ValueError(f"{type(self).__name__} conditions on captions, not class labels")
        y = class_labels(y, batch, self.num_classes, type(self).__name__, device=self.heads.weight.device)
        return F.one_hot(y, self.num_classes).to(self.heads.weight.dtype)

    def posterior(self, features: torch.Tensor, c: torch.Tensor):
        """(mu, logvar) of q(z | x, y) from the encoder's features of x."""
        return self.heads(torch.cat([features, c], dim=1)).chunk(2, dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(encoder_input(self.likelihood, x))

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, c], dim=1))

    def _terms(self, features, x, c):
        """(log p(x | z, y), KL) per sample for one z ~ q(z | x, y)."""
        mu, logvar = self.posterior(features, c)
        z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
        return self.likelihood.log_prob(self.decode(z, c), x), kl

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I) per row (the prior does not depend on y)."""
        return standard_log_density(z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor, y) -> torch.Tensor:
        """log p(x | z, y) per row, in nats."""
        return self.likelihood.log_prob(self.decode(z, self.condition(y, len(x))), x)

    def elbo(self, x: torch.Tensor, y) -> torch.Tensor:
        """ELBO of log p(x | y) per sample, in nats (one z sample, analytic KL)."""
        log_px, kl = self._terms(self.features(x), x, self.condition(y, len(x)))
        return log_px - kl

    def loss(self, x: torch.Tensor, y=None) -> torch.Tensor:
        """-(E log p(x | z, y) - beta KL), averaged over the batch."""
        if y is None:
            raise ValueError(f"CVAE.loss needs the {'captions' if self.text else 'labels'} y "
                             "(train with condition_on_labels)")
        log_px, kl = self._terms(self.features(x), x, self.condition(y, len(x)))
        return -(log_px - self.beta * kl).mean()

    def _default_labels(self, n: int) -> torch.Tensor:
        return torch.arange(n, device=self.heads.weight.device) % self.num_classes

    @torch.no_grad()
    def sample(self, n: int, *, y=None, mean: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of x ~ p(x | y); ``y``: labels ``[n]`` or one int (default: 0, 1, ..., cycling),
        or for a text-conditioned model one caption or a list of n captions (required)."""
        if y is None and self.text is not None:
            if not self.prompts:
                raise ValueError("this CVAE conditions on captions and has no default prompts: "
                                 "sample(n, y='a caption') or a list of n")
            y = [self.prompts[i % len(self.prompts)] for i in range(n)]
        y = self._default_labels(n) if y is None else y
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.heads.weight.device)
        out = self.decode(z, self.condition(y, n))
        return self.likelihood.mean(out) if mean else self.likelihood.sample(out, generator=generator)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y) -> torch.Tensor:
        """The likelihood's mean at the posterior mean of z given x and y."""
        c = self.condition(y, len(x))
        mu, _ = self.posterior(self.features(x), c)
        return self.likelihood.mean(self.decode(mu, c))
