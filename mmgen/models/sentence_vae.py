"""Sentence VAE (Bowman et al. 2016, "Generating sentences from a continuous space").

A GRU encoder maps a sentence to the Gaussian posterior q(z|x); a GRU language model decodes it
from z with teacher forcing. KL annealing and word dropout keep the decoder from ignoring z.
Sentences are token ids as in :mod:`mmgen.data.text`: ``<bos> words <eos> <pad>...`` (LongTensor
[B, T], right-padded); the vocabulary is part of the config, so a saved model decodes on its own.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

import mmgen
from mmgen.io import atomic_write_bytes
from mmgen.models.base import GenerativeModel, component
from mmgen.models.vae import gaussian_iwae_bound

KL_ANNEALING = ("linear", "logistic", "constant")
LOGISTIC_STEEPNESS = 10.0  # the logistic weight goes from 0.007 to 0.993 over the warm-up
ROWS_PER_PASS = 512  # decoder rows per pass of iwae_bound (the logits are rows x T x vocab floats)


def _text():
    """The text modality's handler (tokenizer, token checks); an error names the plugin when missing."""
    from mmgen import modalities
    return modalities.get("text")


def resolve_vocab(vocab) -> list[str]:
    """A vocabulary from a token list or a dataset spec ``{"name": "lee", **kwargs}`` (its train
    split's vocabulary)."""
    if isinstance(vocab, dict):
        from mmgen.data import load
        kwargs = dict(vocab)
        if "name" not in kwargs:
            raise ValueError(f"SentenceVAE vocab spec needs a dataset 'name', got keys {sorted(kwargs)}")
        data = load(kwargs.pop("name"), "train", **kwargs)
        if data.vocab is None:
            raise ValueError(f"SentenceVAE vocab: dataset {data.name!r} holds no token ids (no vocabulary)")
        return list(data.vocab)
    if isinstance(vocab, (list, tuple)) and all(isinstance(t, str) for t in vocab):
        return list(vocab)
    raise TypeError("SentenceVAE vocab must be a list of tokens or a dataset spec {'name': ..., **kwargs}, "
                    f"got {type(vocab).__name__}")


class SentenceVAE(GenerativeModel):
    """Gaussian-latent VAE over sentences: ``q(z|x) = N(mu(x), diag exp(logvar(x)))``, ``p(z) = N(0, I)``,
    ``p(x|z)`` a GRU language model fed z at every step.

    Args:
        vocab: the tokens of the ids (the text modality's specials first: <pad> <bos> <eos> <unk> ...) or a
            dataset spec ``{"name": "lee", **kwargs}`` whose train vocabulary is taken (and saved).
        encoder: ``text.gru`` text encoder (module or spec); ``vocab_size`` is filled in.
        decoder: ``text.gru`` decoder (module or spec); ``vocab_size`` and ``in_features`` are filled in.
        latent_dim: size of z.
        kl_anneal: "linear", "logistic" (Bowman et al.) or "constant": how the KL weight of the
            training loss rises from 0 to 1 over ``kl_warmup`` training calls of ``loss`` (buffer
            ``steps_trained``, saved with the model). The ELBO always weighs the KL by 1.
        word_dropout: probability of replacing each decoder input word by <unk> in training.
        max_length: longest generated sentence, in tokens (words + <eos>).
        lowercase: whether ``encode_text`` lowercases (must match how the vocabulary was built).
    """

    def __init__(self, vocab, encoder=None, decoder=None, latent_dim: int = 32, kl_anneal: str = "logistic",
                 kl_warmup: int = 1000, word_dropout: float = 0.25, max_length: int = 41,
                 lowercase: bool = True):
        super().__init__()
        self.vocab = resolve_vocab(vocab)
        self.tokenizer = _text().tokenizer(self.vocab, lowercase=lowercase)
        if kl_anneal not in KL_ANNEALING:
            raise ValueError(f"SentenceVAE kl_anneal={kl_anneal!r} is not one of {list(KL_ANNEALING)}")
        if not isinstance(kl_warmup, int) or kl_warmup < 0:
            raise ValueError(f"SentenceVAE kl_warmup must be an int >= 0, got {kl_warmup!r}")
        if not 0 <= word_dropout < 1:
            raise ValueError(f"SentenceVAE word_dropout must lie in [0, 1), got {word_dropout!r}")
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"SentenceVAE max_length must be an int >= 1, got {max_length!r}")
        size = len(self.vocab)
        encoder, decoder = ({} if encoder is None else encoder), ({} if decoder is None else decoder)
        if isinstance(encoder, dict):
            encoder = {"name": "text.gru", "vocab_size": size, **encoder}
        if isinstance(decoder, dict):
            decoder = {"name": "text.gru", "vocab_size": size, "in_features": latent_dim, **decoder}
        self.encoder, enc_spec = component(encoder, "text_encoder", "SentenceVAE encoder")
        self.decoder, dec_spec = component(decoder, "decoder", "SentenceVAE decoder")
        for module, what in ((self.encoder, "encoder"), (self.decoder, "decoder")):
            if getattr(module, "vocab_size", None) != size:
                raise ValueError(f"SentenceVAE {what} has vocab_size={getattr(module, 'vocab_size', None)} "
                                 f"but the vocabulary has {size} tokens; they must match")
        if self.decoder.in_features != latent_dim:
            raise ValueError(f"SentenceVAE decoder takes in_features={self.decoder.in_features} but "
                             f"latent_dim={latent_dim}; they must match")
        ids = tuple(getattr(module, name, None) for module, name in (
            (self.decoder, "pad_id"), (self.decoder, "bos_id"), (self.decoder, "eos_id"), (self.encoder, "pad_id")))
        tok = self.tokenizer
        if ids != (tok.pad_id, tok.bos_id, tok.eos_id, tok.pad_id):
            raise ValueError(f"SentenceVAE components use special ids (pad, bos, eos, encoder pad) {ids}; "
                             f"the tokenizer's are {(tok.pad_id, tok.bos_id, tok.eos_id, tok.pad_id)}")
        self.heads = nn.Linear(self.encoder.out_features, 2 * latent_dim)
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        self.latent_dim, self.kl_anneal, self.kl_warmup = latent_dim, kl_anneal, kl_warmup
        self.word_dropout, self.max_length = float(word_dropout), max_length
        self.config = {"model": "sentence_vae", "vocab": self.vocab, "encoder": enc_spec, "decoder": dec_spec,
                       "latent_dim": latent_dim, "kl_anneal": kl_anneal, "kl_warmup": kl_warmup,
                       "word_dropout": self.word_dropout, "max_length": max_length, "lowercase": lowercase}

    # -- text ----------------------------------------------------------------------------------
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Sentences -> LongTensor[B, T] of ``<bos> ids <eos> <pad>...``."""
        return self.tokenizer.batch_encode(list(texts)).to(self.heads.weight.device)

    def to_text(self, tokens: torch.Tensor) -> list[str]:
        """Token ids [B, T] (with or without <bos>) -> one string per row, up to its <eos>."""
        return [self.tokenizer.decode(row.tolist()) for row in tokens]

    def _sentences(self, x: torch.Tensor) -> torch.Tensor:
        """Check a batch of sentences and cut the columns that are padding in every row."""
        _text().check_tokens(x, len(self.vocab), "SentenceVAE")
        if x.shape[1] < 2 or not (x[:, 0] == self.tokenizer.bos_id).all():
            raise ValueError(f"SentenceVAE expects sentences as <bos> ... <eos> (id {self.tokenizer.bos_id} "
                             f"first, at least 2 columns), got shape {tuple(x.shape)}")
        width = int((x != self.tokenizer.pad_id).sum(1).max())
        return x[:, :max(width, 2)]

    def tokens_per_example(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens each sentence's likelihood predicts: its words and <eos> ([B], for per-word metrics)."""
        return (self._sentences(x)[:, 1:] != self.tokenizer.pad_id).sum(1)

    # -- the model -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance [B, latent_dim] of each sentence."""
        mu, logvar = self.heads(self.encoder(self._sentences(x))).chunk(2, dim=1)
        return mu, logvar

    def log_px(self, z: torch.Tensor, x: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | z) per sentence in nats, teacher-forced with ``inputs`` (default: x itself)."""
        x = self._sentences(x)
        logits = self.decoder(z, x if inputs is None else inputs[:, :x.shape[1]])
        nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], ignore_index=self.tokenizer.pad_id,
                              reduction="none")
        return -nll.sum(1)

    def drop_words(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder inputs with each word (not <bos>, <eos> or <pad>) replaced by <unk> with
        probability ``word_dropout``."""
        tok = self.tokenizer
        word = (x != tok.pad_id) & (x != tok.bos_id) & (x != tok.eos_id)
        drop = torch.rand(x.shape, generator=generator, device=x.device) < self.word_dropout
        return x.masked_fill(word & drop, tok.unk_id)

    def kl_weight(self, step: int | None = None) -> float:
        """KL weight of the training loss at training call ``step`` (0-based; default: the next one)."""
        step = int(self.steps_trained) if step is None else step
        progress = (step + 1) / self.kl_warmup if self.kl_warmup else 1.0
        if self.kl_anneal == "constant" or progress >= 1:
            return 1.0
        if self.kl_anneal == "linear":
            return progress
        return 1 / (1 + math.exp(-LOGISTIC_STEEPNESS * (progress - 0.5)))

    def loss(self, x: torch.Tensor, **cond) -> torch.Tensor:
        """Mean negative ELBO per sentence in nats; in training the KL weight is annealed and the
        decoder inputs go through word dropout."""
        x = self._sentences(x)
        mu, logvar = self.encode(x)
        z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
        weight, inputs = 1.0, x
        if self.training:
            weight = self.kl_weight()
            self.steps_trained += 1
            if self.word_dropout:
                inputs = self.drop_words(x)
        return -(self.log_px(z, x, inputs) - weight * kl).mean()

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Evidence lower bound per sentence, in nats (one z sample, analytic KL, no word dropout)."""
        mu, logvar = self.encode(x)
        z, kl = mmgen.ops.reparameterize(mu, logvar, return_kl=True)
        return self.log_px(z, x) - kl

    def kl_divergence(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per sentence, in nats."""
        return mmgen.ops.gaussian_kl(*self.encode(x))

    def iwae_bound(self, x: torch.Tensor, k: int = 64) -> torch.Tensor:
        """log (1/k) sum_i p(x, z_i) / q(z_i | x) per sentence (Burda et al.; k = 1 is a sampled ELBO)."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"iwae_bound needs an int k >= 1, got {k!r}")
        x = self._sentences(x)
        mu, logvar = self.encode(x)
        chunk = max(1, ROWS_PER_PASS // len(x))
        return gaussian_iwae_bound(mu, logvar, lambda z, kk: self.log_px(z, x.repeat(kk, 1)), k, chunk)

    @torch.no_grad()
    def nll(self, x: torch.Tensor, k: int = 100) -> torch.Tensor:
        """Importance-weighted estimate of -log p(x) in nats per sentence (an upper bound in expectation)."""
        return -self.iwae_bound(x, k)

    # -- generation ----------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, z: torch.Tensor, temperature: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Sentences from latents z [B, latent_dim]: greedy when ``temperature == 0``; token ids
        ``<bos> ... <eos> <pad>...`` like the data."""
        words = self.decoder.generate(z, max_length=self.max_length, temperature=temperature,
                                      generator=generator)
        bos = torch.full((len(z), 1), self.tokenizer.bos_id, dtype=torch.long, device=z.device)
        return torch.cat([bos, words], dim=1)

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n sentences: z ~ N(0, I), then words drawn at ``temperature`` (1: the model's own
        distribution, 0: greedy). LongTensor [n, T] like the data."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.heads.weight.device)
        return self.decode(z, temperature, generator)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Greedy decoding from the posterior mean of each sentence."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def interpolate(self, s1, s2, steps: int = 5) -> torch.Tensor:
        """Greedy decodings along the line (homotopy) between the posterior means of two sentences
        (strings or token-id rows), ``steps`` points from s1 to s2 inclusive: LongTensor [steps, T]."""
        if not isinstance(steps, int) or steps < 2:
            raise ValueError(f"interpolate needs an int steps >= 2, got {steps!r}")
        ends = []
        for s in (s1, s2):
            tokens = self.encode_text([s]) if isinstance(s, str) else torch.as_tensor(s).view(1, -1)
            ends.append(self.encode(tokens.to(self.heads.weight.device))[0])
        t = torch.linspace(0, 1, steps, device=ends[0].device).unsqueeze(1)
        return self.decode((1 - t) * ends[0] + t * ends[1])

    @torch.no_grad()
    def write_samples(self, path_prefix: str, n: int, generator: torch.Generator | None = None,
                      data=None) -> list[str]:
        """Write ``path_prefix.txt``: n greedy and n temperature-1 samples from the prior and, given a
        dataset, greedy reconstructions of its first n sentences and a 5-step interpolation between
        its first two. Returns the paths written (the trainer's and ``mmgen sample``'s hook)."""
        lines = ["# samples: z ~ N(0, I), greedy decoding"]
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.heads.weight.device)
        lines += self.to_text(self.decode(z))
        lines += ["", "# samples: z ~ N(0, I), words drawn at temperature 1"]
        lines += self.to_text(self.sample(n, generator=generator))
        if data is not None and len(data) >= 2:
            x = data.x[:n].to(self.heads.weight.device)
            lines += ["", f"# reconstructions of {data.name}/{data.split} (greedy, from the posterior mean): "
                          "> input, = reconstruction"]
            for original, again in zip(self.to_text(x), self.to_text(self.reconstruct(x))):
                lines += [f"> {original}", f"= {again}"]
            lines += ["", f"# interpolation between the posterior means of {data.name}/{data.split} "
                          "sentences 0 and 1 (greedy)"]
            lines += self.to_text(self.interpolate(x[0], x[1], steps=5))
        path = path_prefix + ".txt"
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
        return [path]
