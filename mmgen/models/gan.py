"""GANs from a plugin generator and discriminator (Goodfellow et al. 2014; Radford et al. 2016;
Arjovsky et al. 2017; Gulrajani et al. 2017; Miyato et al. 2018)."""
from __future__ import annotations

import torch
from torch import nn

from mmgen.models import gan_losses
from mmgen.models.base import GenerativeModel, TrainingStep, component
from mmgen.models.ema import ema_of

_SPECTRAL_NORM_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


class GAN(GenerativeModel):
    """Generator ``G(z[, y])`` with outputs in [-1, 1] and discriminator ``D(x[, y]) -> [B]``.

    Args:
        generator: module or spec (kind "generator") with an integer ``latent_dim``.
        discriminator: module or spec (kind "discriminator"): images -> [B] logits or critic scores.
        objective: "minimax", "non_saturating", "wgan" (weight clipping), "wgan_gp" (gradient
            penalty) or "hinge"; see :mod:`mmgen.models.gan_losses`.
        gp_weight: lambda of the gradient penalty of "wgan_gp".
        clip_value: "wgan" clamps every discriminator parameter to [-clip_value, clip_value] after
            each discriminator update.
        spectral_norm: spectrally normalize the discriminator's conv, linear and embedding weights.
        d_steps: discriminator updates (each on its own batch) per generator update.
        ema_decay: the generator weights' exponential moving average, updated after every generator
            update, is what ``sample`` draws from; 0 samples from the live generator.
        data_range: (low, high) of the data. Real data is mapped from it to the generator's [-1, 1]
            and samples back, so ``sample`` returns data-like values ((0, 16) for the digits' levels).

    The GAN is class-conditional when the generator has ``num_classes`` (the discriminator must have
    the same); both then take labels ``y`` (``image.dcgan``: concatenated class embedding in the
    generator, projection discriminator).
    """

    data_components = {"generator": "generator", "discriminator": "discriminator"}  # see mmgen.infer

    def __init__(self, generator, discriminator, objective: str = "non_saturating", gp_weight: float = 10.0,
                 clip_value: float = 0.01, spectral_norm: bool = False, d_steps: int = 1,
                 ema_decay: float = 0.0, data_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.generator, gen_spec = component(generator, "generator", "GAN generator")
        self.discriminator, disc_spec = component(discriminator, "discriminator", "GAN discriminator")
        self.objective = gan_losses.get(objective)
        self.latent_dim = getattr(self.generator, "latent_dim", None)
        if not isinstance(self.latent_dim, int):
            raise ValueError(f"GAN generator {type(self.generator).__name__} has no integer attribute "
                             "'latent_dim' (see the component contract)")
        self.num_classes = getattr(self.generator, "num_classes", None)
        if getattr(self.discriminator, "num_classes", None) != self.num_classes:
            raise ValueError(f"GAN generator has num_classes={self.num_classes} but the discriminator has "
                             f"num_classes={getattr(self.discriminator, 'num_classes', None)}; they must match")
        low, high = (float(v) for v in data_range)
        checks = {"gp_weight >= 0": gp_weight >= 0, "clip_value > 0": clip_value > 0,
                  "d_steps >= 1": isinstance(d_steps, int) and d_steps >= 1,
                  "0 <= ema_decay < 1": 0 <= ema_decay < 1, "data_range low < high": low < high}
        for rule, ok in checks.items():
            if not ok:
                raise ValueError(f"GAN needs {rule}; got gp_weight={gp_weight}, clip_value={clip_value}, "
                                 f"d_steps={d_steps!r}, ema_decay={ema_decay}, data_range={data_range}")
        if objective == "wgan_gp" and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                          for m in self.discriminator.modules()):
            raise ValueError("objective 'wgan_gp' penalizes per-sample gradients, which batch norm in the "
                             "discriminator mixes across the batch; use one without (image.dcgan: "
                             "batch_norm=False)")
        if spectral_norm:
            for module in list(self.discriminator.modules()):
                if isinstance(module, _SPECTRAL_NORM_LAYERS):
                    nn.utils.parametrizations.spectral_norm(module)
        if ema_decay > 0:
            self.generator_ema = ema_of(self.generator, ema_decay)
        self.objective_name, self.gp_weight, self.clip_value = objective, float(gp_weight), float(clip_value)
        self.d_steps, self.ema_decay, self.data_range = d_steps, float(ema_decay), (low, high)
        self.config = {"model": "gan", "generator": gen_spec, "discriminator": disc_spec,
                       "objective": objective, "gp_weight": self.gp_weight, "clip_value": self.clip_value,
                       "spectral_norm": bool(spectral_norm), "d_steps": d_steps,
                       "ema_decay": self.ema_decay, "data_range": [low, high]}

    # -- labels and data range -----------------------------------------------------------------
    def _labels(self, y: torch.Tensor | None, n: int) -> tuple:
        """The extra arguments of G and D: ``(y,)`` for a conditional GAN, else ``()``."""
        if self.num_classes is None:
            if y is not None:
                raise ValueError("this GAN is not class-conditional (its generator has no num_classes); "
                                 "do not pass labels y")
            return ()
        if y is None:
            raise ValueError(f"this GAN is class-conditional (num_classes={self.num_classes}): pass labels y")
        if y.shape != (n,) or (n and not 0 <= int(y.min()) <= int(y.max()) < self.num_classes):
            raise ValueError(f"labels y must be {n} classes in 0..{self.num_classes - 1}, got {y.tolist()}")
        return (y.to(self._device()),)

    def _device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def to_model_range(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.data_range
        return (x.float() - low) * (2 / (high - low)) - 1

    def to_data_range(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.data_range
        return (x + 1) * ((high - low) / 2) + low

    # -- objectives ----------------------------------------------------------------------------
    def generator_loss(self, batch_size_or_z: int | torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's loss on a fresh batch of fakes (``z`` drawn from N(0, I) when given a size;
        a conditional GAN without ``y`` draws uniform labels)."""
        if isinstance(batch_size_or_z, int):
            z = torch.randn(batch_size_or_z, self.latent_dim, device=self._device())
        else:
            z = batch_size_or_z
        if self.num_classes is not None and y is None:
            y = torch.randint(self.num_classes, (len(z),), device=z.device)
        labels = self._labels(y, len(z))
        return self.objective.generator(self.discriminator(self.generator(z, *labels), *labels))

    def discriminator_loss(self, x: torch.Tensor, *, y: torch.Tensor | None = None) -> torch.Tensor:
        """The discriminator's loss on real data ``x`` (in ``data_range``) against as many fakes,
        plus the weighted gradient penalty for "wgan_gp"."""
        labels = self._labels(y, len(x))
        real = self.to_model_range(x)
        with torch.no_grad():
            fake = self.generator(torch.randn(len(x), self.latent_dim, device=real.device), *labels)
        loss = self.objective.discriminator(self.discriminator(real, *labels),
                                            self.discriminator(fake, *labels))
        if self.objective_name == "wgan_gp":
            penalty = gan_losses.gradient_penalty(lambda v: self.discriminator(v, *labels), real, fake)
            loss = loss + self.gp_weight * penalty
        return loss

    # -- training protocol (see mmgen.models.base.TrainingStep) --------------------------------
    def training_steps(self) -> list[TrainingStep]:
        return [
            TrainingStep("discriminator", self.discriminator.parameters(),
                         lambda batch: self.discriminator_loss(batch["x"], **self._batch_labels(batch)),
                         after=self.clip_discriminator if self.objective_name == "wgan" else None),
            TrainingStep("generator", self.generator.parameters(),
                         lambda batch: self.generator_loss(len(batch["x"]), **self._batch_labels(batch)),
                         every=self.d_steps, after=self.update_ema if self.ema_decay > 0 else None),
        ]

    def _batch_labels(self, batch: dict) -> dict:
        if self.num_classes is None:
            return {}
        if batch.get("y") is None:
            raise ValueError("a class-conditional GAN needs a dataset with labels (batch['y'] is missing)")
        return {"y": batch["y"]}

    @torch.no_grad()
    def clip_discriminator(self) -> None:
        for p in self.discriminator.parameters():
            p.clamp_(-self.clip_value, self.clip_value)

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * live, for the weights; buffers (batch-norm statistics)
        are copied."""
        self.generator_ema.update_parameters(self.generator)

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None,
               y: torch.Tensor | int | None = None) -> torch.Tensor:
        """n images in ``data_range`` from the EMA generator (the live one when ``ema_decay == 0``).
        A conditional GAN takes labels [n] or one class for all; without ``y`` it cycles through the
        classes: 0, 1, ..., num_classes - 1, 0, ..."""
        device = self._device()
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        if self.num_classes is not None and y is None:
            y = torch.arange(n, device=device) % self.num_classes
        elif isinstance(y, int):
            y = torch.full((n,), y, device=device)
        net = self.generator_ema if self.ema_decay > 0 else self.generator
        return self.to_data_range(net(z, *self._labels(y, n)))
