"""Text-to-image GANs: GAN-CLS and GAN-INT (Reed et al. 2016) with StackGAN's conditioning
augmentation and second stage (Zhang et al. 2017).

- Text: a text encoder (kind "text_encoder") maps captions to embeddings ``t``. A trainable one
  (``text.gru``, over token ids of the text modality's tokenizer, whose vocabulary is saved in
  config.json) is trained with the discriminator, by the matching loss; a frozen one
  (``text.minilm``) is run once per distinct caption and its embeddings are cached.
- Conditioning augmentation: ``(mu, logvar) = fc(t)``, ``c = reparameterize(mu, logvar)`` and the
  generator's loss adds ``kl_weight * KL(N(mu, exp(logvar)) || N(0, I))``.
- Stage one: ``image.dcgan``'s generator on ``[z, c]``; stage two (``stage_two=True``):
  ``image.refiner`` turns the stage-one image and its own ``c`` into an image twice the side.
  The data then has the stage-two size and stage one learns from it average-pooled by 2.
- Matching-aware discriminator (``image.text_dcgan``, one per stage) scores three pairs: real image
  with its caption (real), real image with another example's caption (fake: mismatch), generated
  image with its caption (fake); its loss is ``(L(real, mismatch) + L(real, generated)) / 2`` for
  the GAN objective L, which for the cross-entropy objectives is Reed et al.'s
  ``log D(real, t) + (log(1 - D(real, t')) + log(1 - D(G(z, t), t))) / 2``.
- GAN-INT: the generator also learns from interpolated embeddings
  ``beta * t_i + (1 - beta) * t_j`` of two captions of the batch, judged with that embedding.
- Contrastive matching (``contrastive_weight > 0``, after XMC-GAN, Zhang et al. 2021): the
  discriminator's image features and projected text embeddings also meet in a batch-wide
  image-text contrastive loss (cosine similarities / ``contrastive_temperature``; image i picks
  caption i among the batch's captions and caption i picks image i, the mean of both; captions
  equal to the right one are no negatives). The discriminator (and a trainable text encoder) learn
  it on real images; the generator on its own images, so it is told which caption of the batch
  its image looks like, not only whether it matches its own. The single mismatching caption of
  GAN-CLS is a weak signal that a GAN on small data learns slowly; this makes every caption of the
  batch a negative.
- Hard negatives: when the batch has ``negative_captions`` (the captioned datasets give, per
  example, its caption with one attribute changed: "a small red circle" for "a small red
  square"), images also have to pick their caption over all of those, as NegCLIP's swapped-word
  captions do (Yuksekgonul et al. 2023). Random in-batch negatives rarely differ from the right
  caption in one attribute only, so without them the generator gets colour and position right
  long before shape.
- Mode seeking (``mode_seeking_weight > 0``, MSGAN, Mao et al. 2019): a conditional GAN tends to
  draw one image per caption whatever the noise; the generator then draws two images per caption
  (noise z1, z2, one condition) and adds ``weight / (mean|G(z1) - G(z2)| / mean|z1 - z2| + 1e-5)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import mmgen
from mmgen.models import gan_losses
from mmgen.models.base import TrainingStep
from mmgen.models.gan import GAN
from mmgen.nn.text_condition import TextEmbedder, make_tokenizer
from mmgen.ops import reparameterize


class ConditioningAugmentation(nn.Module):
    """Text embedding [B, text_features] -> condition [B, condition_dim] ~ N(mu(t), exp(logvar(t)))
    and its KL to N(0, I) per example (``mean=True``: the condition is mu and the KL still returned)."""

    def __init__(self, text_features: int, condition_dim: int):
        super().__init__()
        self.condition_dim = condition_dim
        self.fc = nn.Linear(text_features, 2 * condition_dim)

    def forward(self, t: torch.Tensor, *, generator: torch.Generator | None = None,
                mean: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.fc(t).chunk(2, dim=1)
        c, kl = reparameterize(mu, logvar, generator=generator, return_kl=True)
        return (mu if mean else c), kl


class TextToImageGenerator(nn.Module):
    """Noise z [B, latent_dim] and text embeddings [B, F] -> (images of each stage in [-1, 1], the
    conditioning-augmentation KL [B] of each stage)."""

    def __init__(self, text_features: int, latent_dim: int, condition_dim: int, channels: int, size: int,
                 hidden: int, stage_two: bool, stage_two_hidden: int):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, None
        self.augment = nn.ModuleList([ConditioningAugmentation(text_features, condition_dim)])
        self.stages = nn.ModuleList([mmgen.build("generator", "image.dcgan", latent_dim=latent_dim + condition_dim,
                                                 out_channels=channels, size=size, hidden=hidden)])
        if stage_two:
            self.augment.append(ConditioningAugmentation(text_features, condition_dim))
            self.stages.append(mmgen.build("generator", "image.refiner", condition_dim=condition_dim,
                                           channels=channels, size=size, hidden=stage_two_hidden))

    def forward(self, z: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None = None,
                mean: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``z`` may hold r noise vectors per embedding ([r * B, latent_dim], repeat-major): the
        r images of an embedding then share one condition c (the KL is that of the B conditions)."""
        if len(z) % len(t):
            raise ValueError(f"TextToImageGAN generator got {len(z)} noise vectors for {len(t)} text embeddings; "
                             f"pass a multiple")
        images, kls = [], []
        for k, (augment, stage) in enumerate(zip(self.augment, self.stages)):
            c, kl = augment(t, generator=generator, mean=mean)
            c = c.repeat(len(z) // len(t), 1)
            # stage two refines a fixed stage-one image: its loss does not train stage one
            images.append(stage(torch.cat([z, c], 1)) if k == 0 else stage(images[-1].detach(), c))
            kls.append(kl)
        return images, kls


class TextToImageDiscriminator(nn.Module):
    """One matching-aware discriminator per stage (``stages[k](images, t) -> [B]``)."""

    def __init__(self, text_features: int, channels: int, size: int, hidden: int, batch_norm: bool,
                 stage_two: bool, stage_two_hidden: int):
        super().__init__()
        self.num_classes = None
        sizes = [(size, hidden)] + ([(2 * size, stage_two_hidden)] if stage_two else [])
        self.stages = nn.ModuleList([mmgen.build("discriminator", "image.text_dcgan", text_features=text_features,
                                                 in_channels=channels, size=s, hidden=h, batch_norm=batch_norm)
                                     for s, h in sizes])


class TextToImageGAN(GAN):
    """Captions -> images. ``sample(n, prompts=...)``, ``interpolate(a, b, steps)``; trained by the
    :class:`mmgen.train.Trainer` on a captioned dataset (batches with ``captions``).

    Args:
        text_encoder: spec of a "text_encoder" (``{"name": "text.gru", "out_features": 128}`` or
            ``{"name": "text.minilm"}``). An encoder of token ids gets ``vocab_size`` from ``vocab``.
        vocab: tokenizer vocabulary (a list starting with the special tokens) or the name of a
            captioned dataset whose caption words make it; needed by encoders of token ids.
        prompts: the captions that ``sample`` cycles through when given none, or the name of a
            captioned dataset for its example prompts (default: those of the dataset named by ``vocab``).
        image_channels, image_size: of stage one's images; ``stage_two`` adds a stage at twice the side.
        latent_dim: noise dimensions; condition_dim: dimensions of the augmented condition c.
        hidden, stage_two_hidden: widths of the stage-one and stage-two networks;
            discriminator_hidden: the stage-one discriminator's width (default: ``hidden``).
        kl_weight: weight of the conditioning-augmentation KL in the generator loss.
        interpolation_weight: weight of the GAN-INT generator loss (0 turns it off);
            interpolation_beta: its beta.
        mismatch: score real images with mismatching captions (GAN-CLS); False gives a plain
            text-conditional GAN.
        contrastive_weight: weight of the contrastive image-text terms of both losses (0: off);
            contrastive_temperature: the temperature dividing their cosine similarities.
        mode_seeking_weight: weight of MSGAN's mode-seeking term (Mao et al. 2019; 0: off): the
            generator draws two images per caption from two noise vectors and one condition and
            is penalized by the inverse of their distance per unit of noise distance, so it cannot
            ignore z (one image per caption whatever the noise).
        objective, gp_weight, clip_value, spectral_norm, d_steps, ema_decay, data_range: as in
            :class:`mmgen.models.GAN`; batch_norm: in the discriminators.
    """

    text_to_image = True  # judged by the attribute classifier (mmgen.eval.attributes)

    @classmethod
    def infer_config(cls, config: dict, info: dict) -> dict:
        """``image_channels`` and ``image_size`` from the data's images (``"x"``; stage one makes half
        the data's side when ``stage_two``) and, without ``vocab``, the vocabulary of the data's
        captions; see :mod:`mmgen.infer`."""
        from mmgen.infer import entry, fill_caption_vocabulary, fill_value
        config = fill_caption_vocabulary(config, info)
        images = entry(info, "x") or {}
        size = images.get("size")
        if size is not None and config.get("stage_two"):
            size = size // 2
        fill_value(config, "image_channels", images.get("channels"), cls.__name__, "channels")
        fill_value(config, "image_size", size, cls.__name__, "size" if not config.get("stage_two") else "size / 2")
        return config

    def __init__(self, text_encoder: dict | None = None, vocab: list[str] | str | None = None,
                 prompts: list[str] | str | None = None, image_channels: int = 1, image_size: int = 28,
                 latent_dim: int = 32, condition_dim: int = 32, hidden: int = 32, stage_two: bool = False,
                 stage_two_hidden: int = 32, kl_weight: float = 1.0, interpolation_weight: float = 1.0,
                 interpolation_beta: float = 0.5, mismatch: bool = True, contrastive_weight: float = 0.0,
                 contrastive_temperature: float = 0.1, objective: str = "non_saturating",
                 gp_weight: float = 10.0, clip_value: float = 0.01, spectral_norm: bool = False,
                 d_steps: int = 1, ema_decay: float = 0.0, data_range: tuple[float, float] = (0.0, 1.0),
                 batch_norm: bool = True, discriminator_hidden: int | None = None,
                 mode_seeking_weight: float = 0.0):
        text_encoder = dict(text_encoder or {"name": "text.gru"})
        tokenizer, prompts = _tokenizer_and_prompts(vocab, prompts)
        text = TextEmbedder(text_encoder, tokenizer, what="TextToImageGAN text_encoder")
        features = text.out_features
        if not 0 <= interpolation_beta <= 1 or interpolation_weight < 0 or kl_weight < 0:
            raise ValueError(f"TextToImageGAN needs 0 <= interpolation_beta <= 1, interpolation_weight >= 0 and "
                             f"kl_weight >= 0; got {interpolation_beta}, {interpolation_weight}, {kl_weight}")
        if mode_seeking_weight < 0:
            raise ValueError(f"TextToImageGAN needs mode_seeking_weight >= 0, got {mode_seeking_weight!r}")
        if contrastive_weight < 0 or not contrastive_temperature > 0:
            raise ValueError(f"TextToImageGAN needs contrastive_weight >= 0 and contrastive_temperature > 0; got "
                             f"{contrastive_weight}, {contrastive_temperature}")
        generator = TextToImageGenerator(features, latent_dim, condition_dim, image_channels, image_size,
                                         hidden, stage_two, stage_two_hidden)
        discriminator_hidden = hidden if discriminator_hidden is None else discriminator_hidden
        discriminator = TextToImageDiscriminator(features, image_channels, image_size, discriminator_hidden, batch_norm,
                                                 stage_two, stage_two_hidden)
        super().__init__(generator, discriminator, objective=objective, gp_weight=gp_weight,
                         clip_value=clip_value, spectral_norm=spectral_norm, d_steps=d_steps,
                         ema_decay=ema_decay, data_range=data_range)
        self.tokenizer, self.prompts = tokenizer, prompts
        self.text_encoder = text  # a frozen encoder's weights come from its package, not model.safetensors
        self.frozen_text = text.frozen
        self.channels, self.image_size, self.stage_two = image_channels, image_size, stage_two
        self.kl_weight, self.mismatch = float(kl_weight), mismatch
        self.interpolation_weight, self.interpolation_beta = float(interpolation_weight), float(interpolation_beta)
        self.contrastive_weight, self.contrastive_temperature = float(contrastive_weight), float(contrastive_temperature)
        self.mode_seeking_weight = float(mode_seeking_weight)
        self.config = {"model": "text_to_image_gan", "text_encoder": text_encoder, "image_channels": image_channels,
                       "image_size": image_size, "latent_dim": latent_dim, "condition_dim": condition_dim,
                       "hidden": hidden, "stage_two": stage_two, "stage_two_hidden": stage_two_hidden,
                       "kl_weight": self.kl_weight, "interpolation_weight": self.interpolation_weight,
                       "interpolation_beta": self.interpolation_beta, "mismatch": mismatch,
                       "contrastive_weight": self.contrastive_weight,
                       "contrastive_temperature": self.contrastive_temperature,
                       "objective": objective, "gp_weight": self.gp_weight, "clip_value": self.clip_value,
                       "spectral_norm": bool(spectral_norm), "d_steps": d_steps, "ema_decay": self.ema_decay,
                       "data_range": list(self.data_range), "batch_norm": batch_norm,
                       "discriminator_hidden": discriminator_hidden, "mode_seeking_weight": self.mode_seeking_weight}
        if tokenizer is not None:
            self.config["vocab"] = tokenizer.vocab
        if prompts is not None:
            self.config["prompts"] = prompts

    # -- text ----------------------------------------------------------------------------------
    def embed_text(self, captions: list[str]) -> torch.Tensor:
        """Embeddings [B, F] of the captions (differentiable for a trainable encoder)."""
        return self.text_encoder(captions).to(self._device())

    def _prompts(self, n: int, prompts) -> list[str]:
        if prompts is None:
            if not self.prompts:
                raise ValueError("this model has no default prompts: pass prompts=[...] (or a string)")
            prompts = self.prompts
        if isinstance(prompts, str):
            return [prompts] * n
        if len(prompts) == n:
            return list(prompts)
        if prompts is self.prompts:
            return [prompts[i % len(prompts)] for i in range(n)]
        raise ValueError(f"pass one prompt (a string) for all {n} images or a list of {n} prompts, "
                         f"got a list of {len(prompts)}")

    # -- images --------------------------------------------------------------------------------
    def _real_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Real images per stage, in the model range: the data, and for stage one of a two-stage
        model the data average-pooled by 2."""
        side = self.image_size * (2 if self.stage_two else 1)
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, side, side):
            raise ValueError(f"TextToImageGAN expects images [B, {self.channels}, {side}, {side}], got "
                             f"{tuple(x.shape)}")
        real = self.to_model_range(x)
        return [F.avg_pool2d(real, 2), real] if self.stage_two else [real]

    # -- objectives ----------------------------------------------------------------------------
    def discriminator_loss(self, x: torch.Tensor, captions: list[str],
                           negatives: list[str] | None = None) -> torch.Tensor:
        """Sum over stages of the matching-aware loss on (real, caption), (real, another
        example's caption) and (generated, caption); plus the gradient penalty for "wgan_gp" and
        the contrastive loss of the real images (with hard ``negatives``, one per example, if given)."""
        reals = self._real_stages(x)
        t = self.embed_text(captions)
        if len(t) != len(x):
            raise ValueError(f"got {len(x)} images but {len(captions)} captions")
        candidates, candidate_captions = self._candidates(t, captions, negatives)
        with torch.no_grad():
            fakes, _ = self.generator(torch.randn(len(x), self.latent_dim, device=t.device), t)
        loss = 0.0
        for disc, real, fake in zip(self.discriminator.stages, reals, fakes):
            d_fake = disc(fake, t)
            # one pass over the real images scores them with every caption (and the similarities)
            texts = (t, t.roll(1, 0)) if self.mismatch else (t,)
            out = disc(real, *texts, similarity_to=candidates)
            out = out if isinstance(out, tuple) else (out,)
            if self.mismatch:
                d_real, d_wrong = out[:2]
                loss = loss + 0.5 * (self.objective.discriminator(d_real, d_wrong)
                                     + self.objective.discriminator(d_real, d_fake))
            else:
                loss = loss + self.objective.discriminator(out[0], d_fake)
            if candidates is not None:
                loss = loss + self.contrastive_weight * self._contrastive(out[-1], captions, candidate_captions)
            if self.objective_name == "wgan_gp":
                penalty = gan_losses.gradient_penalty(lambda v, d=disc: d(v, t), real, fake)
                loss = loss + self.gp_weight * penalty
        return loss

    def generator_loss(self, captions: list[str], negatives: list[str] | None = None) -> torch.Tensor:
        """Adversarial loss of images generated from the captions (and, with GAN-INT, from
        interpolated caption embeddings) plus the weighted conditioning-augmentation KL, and the
        contrastive loss of the images of the captions (with hard ``negatives`` if given)."""
        with torch.no_grad():  # the text encoder learns with the discriminator
            t = self.embed_text(captions)
            candidates = self._candidates(t, captions, negatives)
        loss = self._generator_term(t, captions, *candidates, pairs=self.mode_seeking_weight > 0)
        if self.interpolation_weight > 0:
            beta = self.interpolation_beta
            loss = loss + self.interpolation_weight * self._generator_term(beta * t + (1 - beta) * t.roll(1, 0))
        return loss

    def _generator_term(self, t: torch.Tensor, captions: list[str] | None = None,
                        candidates: torch.Tensor | None = None,
                        candidate_captions: list[str] | None = None, pairs: bool = False) -> torch.Tensor:
        """Adversarial + KL loss of images generated from ``t``; with ``candidates`` (from
        :meth:`_candidates` for ``captions``, the captions of ``t``) also their contrastive loss.
        ``pairs``: two images per embedding (noise z1, z2, one condition), both judged, plus the
        mode-seeking term ``mode_seeking_weight / (mean|G(z1) - G(z2)| / mean|z1 - z2| + 1e-5)``."""
        copies = 2 if pairs else 1
        z = torch.randn(copies * len(t), self.latent_dim, device=t.device)
        fakes, kls = self.generator(z, t)
        texts = t.repeat(copies, 1)
        loss = 0.0
        for disc, fake, kl in zip(self.discriminator.stages, fakes, kls):
            if candidates is not None:
                score, similarity = disc(fake, texts, similarity_to=candidates)
                loss = loss + self.contrastive_weight * sum(
                    self._contrastive(half, captions, candidate_captions) for half in similarity.chunk(copies)) / copies
            else:
                score = disc(fake, texts)
            loss = loss + self.objective.generator(score) + self.kl_weight * kl.mean()
            if pairs:
                first, second = fake.chunk(2)
                z1, z2 = z.chunk(2)
                ratio = (first - second).abs().mean() / (z1 - z2).abs().mean()
                loss = loss + self.mode_seeking_weight / (ratio + 1e-5)
        return loss

    def _candidates(self, t: torch.Tensor, captions: list[str], negatives: list[str] | None):
        """The embeddings [K, F] and captions the contrastive loss lets each image choose from: the
        batch's captions, then the hard ``negatives`` (k per caption, in any order); (None, None)
        with contrastive matching off."""
        if self.contrastive_weight == 0:
            return None, None
        if negatives is None:
            return t, list(captions)
        if not negatives or len(negatives) % len(captions):
            raise ValueError(f"got {len(negatives)} negative captions for {len(captions)} captions: pass k per "
                             f"caption (k >= 1), e.g. one per attribute")
        return torch.cat([t, self.embed_text(negatives)]), list(captions) + list(negatives)

    def _contrastive(self, similarity: torch.Tensor, captions: list[str],
                     candidate_captions: list[str] | None = None) -> torch.Tensor:
        """Mean of two cross-entropies on ``similarity / temperature`` (images [B] x candidates
        [K], the first B of which are the images' own ``captions``): image i picking caption i
        among all K candidates, and caption i picking image i among the B images. A candidate
        equal to the right caption is no negative."""
        candidate_captions = list(captions) if candidate_captions is None else candidate_captions
        logits = similarity / self.contrastive_temperature
        index = {c: k for k, c in enumerate(dict.fromkeys(candidate_captions))}
        ids = torch.tensor([index[c] for c in candidate_captions], device=logits.device)
        b = len(captions)
        same = ids[:b, None] == ids[None, :]
        same[:, :b].fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
        target = torch.arange(b, device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :b].T, target))

    def training_steps(self) -> list[TrainingStep]:
        text = list(self.text_encoder.parameters())  # none for a frozen encoder
        return [
            TrainingStep("discriminator", list(self.discriminator.parameters()) + text,
                         lambda batch: self.discriminator_loss(batch["x"], _captions(batch),
                                                               batch.get("negative_captions")),
                         after=self.clip_discriminator if self.objective_name == "wgan" else None),
            TrainingStep("generator", self.generator.parameters(),
                         lambda batch: self.generator_loss(_captions(batch), batch.get("negative_captions")),
                         every=self.d_steps, after=self.update_ema if self.ema_decay > 0 else None),
        ]

    # -- sampling ------------------------------------------------------------------------------
    def _net(self) -> TextToImageGenerator:
        return self.generator_ema if self.ema_decay > 0 else self.generator

    @torch.no_grad()
    def sample(self, n: int, *, prompts: list[str] | str | None = None,
               generator: torch.Generator | None = None, stage: int | None = None,
               condition: str = "mean") -> torch.Tensor:
        """n images in ``data_range`` for ``prompts`` (one string for all, or n strings; default: the
        model's prompts in turn), from the last stage (or ``stage`` 1 / 2). The same ``generator``
        seed gives the same images.

        ``condition``: "mean" (default) gives the generator the mean ``mu(t)`` of the conditioning
        augmentation, as :meth:`interpolate` does; the variety comes from the noise z. "sample"
        draws ``c ~ N(mu(t), exp(logvar(t)))`` as in training. Conditioning augmentation is a
        training-time augmentation (more condition vectors per caption, a smoother condition
        space); its noise at sampling time blurs which caption is drawn: on MNIST captions a
        sampled condition names another digit noticeably more often than the mean does, with the
        same model (docs/text-to-image.md)."""
        if condition not in ("mean", "sample"):
            raise ValueError(f"condition must be 'mean' or 'sample', got {condition!r}")
        captions = self._prompts(n, prompts)
        t = self.embed_text(captions)
        z = torch.randn(n, self.latent_dim, generator=generator, device=t.device)
        images, _ = self._net()(z, t, generator=generator, mean=condition == "mean")
        return self.to_data_range(images[self._stage(stage)])

    @torch.no_grad()
    def interpolate(self, prompt_a: str, prompt_b: str, steps: int = 8, *,
                    generator: torch.Generator | None = None, stage: int | None = None) -> torch.Tensor:
        """``steps`` images [steps, C, H, W] from one noise vector, along the line from ``prompt_a``'s
        embedding to ``prompt_b``'s (the condition is its mean, so the path is smooth)."""
        if steps < 2:
            raise ValueError(f"interpolate needs steps >= 2, got {steps!r}")
        ends = self.embed_text([prompt_a, prompt_b])
        alpha = torch.linspace(0, 1, steps, device=ends.device).unsqueeze(1)
        t = (1 - alpha) * ends[:1] + alpha * ends[1:]
        z = torch.randn(1, self.latent_dim, generator=generator, device=t.device).expand(steps, -1)
        images, _ = self._net()(z, t, generator=generator, mean=True)
        return self.to_data_range(images[self._stage(stage)])

    def _stage(self, stage: int | None) -> int:
        stages = 2 if self.stage_two else 1
        if stage is None:
            return stages - 1
        if stage not in range(1, stages + 1):
            raise ValueError(f"stage must be one of {list(range(1, stages + 1))} for this model, got {stage!r}")
        return stage - 1


def _captions(batch: dict) -> list[str]:
    if batch.get("captions") is None:
        raise ValueError("TextToImageGAN trains on a captioned dataset (batches need 'captions'), e.g. "
                         "mnist-captions or shapes")
    return batch["captions"]


def _tokenizer_and_prompts(vocab, prompts):
    """The tokenizer of ``vocab`` (None without one) and the default prompts (a list, or the name of
    a captioned dataset for its example prompts)."""
    from mmgen.data import captions
    if isinstance(prompts, str):
        prompts = captions.example_prompts(prompts)
    if isinstance(vocab, str) and prompts is None:
        prompts = captions.example_prompts(vocab)
    return make_tokenizer(vocab), prompts
