"""VQ-VAE (van den Oord et al., 2017) with a PixelCNN prior over its code grid, in one model."""
from __future__ import annotations

import torch

from mmgen import ops
from mmgen.models.base import GenerativeModel, component
from mmgen.models.pixelcnn import PixelCNN
from mmgen.models.vae import encoder_input, make_likelihood
from mmgen.nn.vector_quantizer import VectorQuantizer

STAGES = ("autoencoder", "prior")


class VQVAE(GenerativeModel):
    """Encoder -> grid of D-vectors -> nearest of ``num_codes`` codes -> decoder, plus a PixelCNN
    prior p(codes) over the code grid, trained in two stages by the same ``loss``:

    1. the first ``autoencoder_steps`` calls of ``loss`` in training mode train encoder, codebook and
       decoder: ``-log p(x | z_q) + vq_loss`` (the VQ loss summed over the grid, as in the paper);
    2. later calls train only the prior: ``-log p(codes(x))``, on the codes of the now frozen
       autoencoder (its parameters get no gradient and the codebook stops updating).

    So one trainer run with ``train.steps > autoencoder_steps`` trains both; the count lives in the
    buffer ``steps_trained`` and is saved and resumed with the weights. ``stage`` says which stage
    the next training step is in (a loss computed in eval mode, such as the trainer's ``val_loss``,
    is that stage's objective).

    ``elbo(x)`` is the VQ-VAE bound in nats: ``log p(x | z_q(x)) + log p(codes(x))`` (the posterior
    is one-hot, so the KL term is ``-log p(codes)``). ``sample(n)`` draws codes from the prior and
    decodes them.

    Args:
        encoder: module or spec mapping images to ``[B, D, h, w]``, with ``out_channels`` (D) and
            ``grid_size`` (h = w) attributes, e.g. ``{"name": "image.vqconv", ...}``.
        decoder: module or spec mapping ``[B, D, h, w]`` to the likelihood's parameters, with
            ``in_channels == D``.
        num_codes: codebook size, 2..256 (the prior's number of levels).
        likelihood: "bernoulli", "gaussian" or {"name": "categorical", "levels": L}.
        beta, ema, decay, dead_code_threshold: of :class:`mmgen.nn.VectorQuantizer`.
        prior: keyword arguments of :class:`mmgen.models.PixelCNN` (hidden, layers, kernel sizes).
        autoencoder_steps: training steps of stage 1.
    """

    data_components = {"encoder": "encoder", "decoder": "decoder"}  # built on the data (mmgen.infer)

    def __init__(self, encoder, decoder, num_codes: int = 64, likelihood="bernoulli", beta: float = 0.25,
                 ema: bool = True, decay: float = 0.99, dead_code_threshold: float = 1.0,
                 prior: dict | None = None, autoencoder_steps: int = 1000):
        super().__init__()
        self.encoder, enc_spec = component(encoder, "encoder", "VQVAE encoder")
        self.decoder, dec_spec = component(decoder, "decoder", "VQVAE decoder")
        self.likelihood, lik_spec = make_likelihood(likelihood)
        for module, attrs, what in ((self.encoder, ("out_channels", "grid_size"), "encoder"),
                                    (self.decoder, ("in_channels",), "decoder")):
            for attr in attrs:
                if not isinstance(getattr(module, attr, None), int):
                    raise ValueError(f"VQVAE {what} {type(module).__name__} has no integer attribute "
                                     f"{attr!r} (a grid {what} such as image.vqconv has it)")
        dim = self.encoder.out_channels
        if self.decoder.in_channels != dim:
            raise ValueError(f"VQVAE decoder takes in_channels={self.decoder.in_channels} but the encoder "
                             f"gives out_channels={dim}; they must match")
        if not isinstance(num_codes, int) or not 2 <= num_codes <= 256:
            raise ValueError(f"VQVAE: num_codes must be an int in [2, 256] (the PixelCNN prior's levels), "
                             f"got {num_codes!r}")
        if not isinstance(autoencoder_steps, int) or autoencoder_steps < 0:
            raise ValueError(f"VQVAE: autoencoder_steps must be an int >= 0, got {autoencoder_steps!r}")
        prior = dict(prior or {})
        for key in ("channels", "levels", "image_size", "num_classes", "cond_dim"):
            if key in prior:
                raise ValueError(f"VQVAE: prior option {key!r} is set by the VQ-VAE itself; accepted "
                                 "options: hidden, layers, kernel_size, first_kernel_size, head_channels")
        self.quantizer = VectorQuantizer(num_codes, dim, beta=beta, ema=ema, decay=decay,
                                         dead_code_threshold=dead_code_threshold)
        side = self.encoder.grid_size
        self.prior = PixelCNN(channels=1, levels=num_codes, image_size=side, **prior)
        self.register_buffer("steps_trained", torch.zeros((), dtype=torch.long))
        self.num_codes, self.autoencoder_steps = num_codes, autoencoder_steps
        self.config = {"model": "vqvae", "encoder": enc_spec, "decoder": dec_spec, "num_codes": num_codes,
                       "likelihood": lik_spec, "beta": float(beta), "ema": ema, "decay": float(decay),
                       "dead_code_threshold": float(dead_code_threshold), "prior": prior,
                       "autoencoder_steps": autoencoder_steps}

    @property
    def stage(self) -> str:
        """"autoencoder" or "prior": what the next training step trains."""
        return STAGES[int(self.steps_trained) >= self.autoencoder_steps]

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices ``[B, h, w]`` (int64) of x; no gradient and no codebook update."""
        with torch.no_grad():
            z = self.encoder(encoder_input(self.likelihood, x)).movedim(1, -1)
            codebook = self.quantizer.codebook
            indices, _ = ops.vq_nearest(z.reshape(-1, z.shape[-1]).to(codebook.dtype), codebook)
        return indices.view(z.shape[:-1])

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Decoder output (likelihood parameters) for code indices ``[B, h, w]``."""
        return self.decoder(self.quantizer.get_codes_from_indices(codes).movedim(-1, 1))

    def loss(self, x: torch.Tensor, **cond) -> torch.Tensor:
        """The current stage's objective, averaged over the batch (see the class docs)."""
        if cond:
            raise ValueError(f"VQVAE is unconditional; got condition(s) {sorted(cond)}")
        stage = self.stage
        if self.training:
            self.steps_trained += 1
        return self.prior_loss(x) if stage == "prior" else self.autoencoder_loss(x)

    def autoencoder_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 1's objective ``-log p(x | z_q) + vq_loss``, averaged over the batch; in training
        mode it also updates the codebook. Unlike ``loss`` it neither reads nor counts
        ``steps_trained`` (a host sync), so ``torch.compile(fullgraph=True)`` takes it whole."""
        out = self.quantizer(self.encoder(encoder_input(self.likelihood, x)).movedim(1, -1))
        log_px = self.likelihood.log_prob(self.decoder(out.quantized.movedim(-1, 1)), x)
        per_example = out.quantized[0].numel()  # out.loss is a mean over all elements of the grid
        return -log_px.mean() + out.loss * per_example

    def prior_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 2's objective ``-log p(codes(x))``, averaged over the batch (the autoencoder gets no
        gradient); like ``autoencoder_loss`` it does not count steps."""
        return self.prior.loss(self.codes(x).unsqueeze(1))

    @torch.no_grad()
    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """The VQ-VAE bound on log p(x) per sample, in nats: log p(x | z_q) + log p(codes)."""
        codes = self.codes(x)
        return self.likelihood.log_prob(self.decode_codes(codes), x) + self.prior.log_prob(codes.unsqueeze(1))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean given the quantized encoding of x."""
        return self.likelihood.mean(self.decode_codes(self.codes(x)))

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n code grids from the prior and decode them (``mean=True``: the likelihood's mean)."""
        out = self.decode_codes(self.prior.sample(n, generator=generator).squeeze(1))
        return self.likelihood.mean(out) if mean else self.likelihood.sample(out, generator=generator)
