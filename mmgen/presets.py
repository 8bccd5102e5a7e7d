"""Ready-made run configs (``mmgen train --preset NAME``): data, model and training options.

A run config is JSON: ``{"data": {"name": ..., **kwargs}, "model": <model config>,
"train": <TrainConfig options>, "eval": {"k": ..., "max_examples": ...}}``.

What the data gives is left out of the model configs (image size and channels, log-mel bins and
frames, vocabularies, ``wave`` options, numbers of classes and of grey levels): :mod:`mmgen.infer`
fills it in from the training data when the run is prepared, and the saved model's config.json
holds it (tests/test_infer.py checks that every preset builds the model it built when the numbers
were written out).
"""
from __future__ import annotations

import copy


def _conv(latent: int, hidden: int, **decoder) -> tuple[dict, dict]:
    """image.conv encoder and decoder (size and channels from the data; a categorical likelihood's
    levels set the decoder's params_per_channel)."""
    encoder = {"name": "image.conv", "out_features": 256, "hidden": hidden}
    return encoder, {"name": "image.conv", "in_features": latent, **decoder, "hidden": hidden}


_DIGITS_ENC, _DIGITS_DEC = _conv(16, 64)
_MNIST_ENC, _MNIST_DEC = _conv(32, 32, params_per_channel=1)  # one Bernoulli logit per pixel
_VQ_ENC = {"name": "image.vqconv", "out_channels": 16, "hidden": 32, "downsample": 2}
_VQ_DEC = {"name": "image.vqconv", "in_channels": 16, "hidden": 32, "downsample": 2}


def _dcgan(data_range: list, latent: int, hidden: int, batch_norm: bool = True, **gan) -> dict:
    """A GAN of image.dcgan networks; real data is mapped from ``data_range`` to the tanh range."""
    return {"model": "gan", "data_range": data_range, **gan,
            "generator": {"name": "image.dcgan", "latent_dim": latent, "hidden": hidden},
            "discriminator": {"name": "image.dcgan", "hidden": hidden, "batch_norm": batch_norm}}


def _mfm_trimodal() -> dict:
    """MFM modalities of mnist-trimodal: image.conv (Bernoulli), audio.mel (Gaussian over standardized
    log-mels, WAV through Griffin-Lim) and text.gru (teacher-forced captions).

    The audio reconstruction has weight 0.25: its Gaussian NLL over 32 x 65 log-mel values (~2,000
    nats a clip) otherwise dwarfs the label terms in the gradient of the shared audio encoder, and
    the speech-only label accuracy on unseen voices suffers. 0.25 was chosen on val voices; that
    comparison has no record under benchmarks/results/ (``mmgen record mfm-digits --set ...``
    would make one), so no number is quoted here.

    From the data: image size and channels, log-mel bins and frames and the ``wave`` options, the
    vocabulary (and its size), the caption length (``max_length``) and the number of classes."""
    return {
        "image": {"encoder": {"name": "image.conv", "out_features": 128, "hidden": 16},
                  "decoder": {"name": "image.conv", "in_features": 128, "hidden": 16},
                  "likelihood": "bernoulli"},
        "audio": {"encoder": {"name": "audio.mel", "out_features": 128, "hidden": 64},
                  "decoder": {"name": "audio.mel", "in_features": 128, "hidden": 64},
                  "likelihood": "gaussian", "weight": 0.25},
        "text": {"encoder": {"name": "text.gru", "out_features": 64, "embed_dim": 32, "hidden": 64},
                 "decoder": {"name": "text.gru", "in_features": 64, "embed_dim": 32, "hidden": 64},
                 "likelihood": "tokens"},
    }


def _adam(lr: float, betas: list) -> dict:
    """The same Adam options for the generator and the discriminator."""
    return {name: {"lr": lr, "betas": betas} for name in ("generator", "discriminator")}

# Shared by the text-to-image presets: small hinge GAN, spectral norm, weak conditioning-augmentation
# KL (at 1.0 the text was drowned in noise), a faster generator, and the contrastive image-text
# terms with hard negatives (without them no run learned the MNIST digit, 0.09 at best).
_T2I_GAN = {"latent_dim": 32, "condition_dim": 32, "hidden": 16, "kl_weight": 0.02, "interpolation_weight": 1.0,
            "contrastive_weight": 1.0, "ema_decay": 0.99, "data_range": [0, 1], "objective": "hinge",
            "spectral_norm": True, "batch_norm": False}
_T2I_GRU = {"name": "text.gru", "out_features": 64, "embed_dim": 32, "hidden": 64}
_T2I_OPTIMIZERS = {"generator": {"lr": 5e-4, "betas": [0.5, 0.999]},
                   "discriminator": {"lr": 2e-4, "betas": [0.5, 0.999]}}

# The multimodal comparison (MFM without labels, MVAE, MMVAE, MoPoE on mnist-trimodal): the same
# encoders and decoders (MFM's), the same latent size (32 = MFM's 16 + 2 x 8 per modality, less one
# modality factor), the same optimizer and step budget, the same modality weights and KL weight. The
# caption's reconstruction is weighted 50 (a caption is ~2 nats against an image's ~700: at weight 1
# or 10 the latent barely has to carry what the caption says) and the KL 0.5; both were chosen on the
# val split by MoPoE's mean cross-modal coherence over text weights 1, 10, 50 and KL weights 1, 0.5,
# 0.25, in single-seed runs without a record, so no number is quoted here.
_MULTIMODAL_WEIGHTS = {"text": 50.0}
_MULTIMODAL_BETA = 0.5
_MULTIMODAL_TRAIN = {"steps": 1500, "batch_size": 64, "lr": 1e-3, "schedule": "cosine", "num_samples": 20,
                     "log_every": 100, "eval_every": 500, "sample_every": 750, "checkpoint_every": 500}
_MULTIMODAL_EVAL = {"judges": True, "judge_steps": 300, "log_likelihood_k": 20}


def _weighted_trimodal() -> dict:
    """MFM's mnist-trimodal modalities with the comparison's reconstruction weights."""
    modalities = _mfm_trimodal()
    for m, weight in _MULTIMODAL_WEIGHTS.items():
        modalities[m]["weight"] = weight
    return modalities


def _multimodal_vae(family: str, what: str, **options) -> dict:
    """A multimodal VAE preset on mnist-trimodal, with the comparison's modalities and weights."""
    return {"description": f"{what} over MNIST-5k images + spoken digits + captions, no labels",
            "data": {"name": "mnist-trimodal"},
            "model": {"model": family, "modalities": _weighted_trimodal(), "latent_dim": 32,
                      "beta": _MULTIMODAL_BETA, **options},
            "train": copy.deepcopy(_MULTIMODAL_TRAIN), "eval": copy.deepcopy(_MULTIMODAL_EVAL)}


_VAE_MNIST_MODEL = {"encoder": _MNIST_ENC, "decoder": _MNIST_DEC, "latent_dim": 32, "likelihood": "bernoulli",
                    "kl_warmup": 1000}  # without the warm-up: collapse, 206 nats
_VAE_MNIST_TRAIN = {"steps": 4000, "batch_size": 64, "lr": 1e-3, "schedule": "cosine",
                    "log_every": 200, "eval_every": 1000, "sample_every": 1000, "checkpoint_every": 1000}
# annealed importance sampling on MNIST-5k (mmgen.eval.ais): the estimator that compares AVB, which
# has no posterior density for an IWAE bound, with the VAEs
_AIS_MNIST = {"steps": 500, "chains": 4, "leapfrog": 5, "max_examples": 50}


def _vae_mnist_with(what: str, **options) -> dict:
    """vae-mnist with extra model options (the same data, networks, training and evaluation)."""
    return {"description": f"{what}, Bernoulli likelihood on dynamically binarized MNIST-5k (28x28)",
            "data": {"name": "mnist", "binarize": "dynamic"},
            "model": {"model": "vae", **copy.deepcopy(_VAE_MNIST_MODEL), **options},
            "train": {**_VAE_MNIST_TRAIN}, "eval": {"k": 1000, "max_examples": 500}}
# Diffusion (mmgen.models.Diffusion): Ho et al.'s linear schedule over T = 1000 steps, an
# image.unet noise predictor, the weights' EMA for sampling and the bound; the conditional ones drop
# the condition 10% of the time (classifier-free guidance). Samples: the ancestral sampler on 100 of
# the 1000 steps; DDIM in 25 or 100 steps left the shapes' backgrounds noisy at the preset's budget
# (looked at on val samples of diffusion-shapes at step 3000; no record). diffusion-shapes samples
# at guidance 1, chosen over 3 on val with its three recorded runs (benchmarks/guidance_val.py,
# results/guidance_shapes.json); diffusion-mnist-captions keeps 3 (not compared). diffusion-digits
# averages its weights with the EMA warm-up (ema_warmup), chosen on val over the plain EMA (the
# bound about 9 nats higher on each of three seeds, docs/diffusion.md); the other presets were not
# compared and keep the plain EMA.
_UNET = {"name": "image.unet", "hidden": 32, "channel_mult": [1, 2, 2]}
_DIFFUSION_TRAIN = {"batch_size": 64, "lr": 1e-3, "schedule": "cosine", "grad_clip": 1.0, "log_every": 100,
                    "sample_every": 1000, "checkpoint_every": 1000}


def _text_diffusion(dataset: str, denoiser: dict, guidance: float) -> dict:
    """A caption-conditioned diffusion model: a GRU caption encoder trained with it, 100 ancestral steps."""
    return {"model": "diffusion", "denoiser": denoiser, "vocab": dataset, "text_encoder": _T2I_GRU,
            "data_range": [0, 1], "ema_decay": 0.999, "guidance_scale": guidance, "sampler": "ddpm",
            "sample_steps": 100}


PRESETS: dict[str, dict] = {
    "vae-digits": {
        "description": "VAE, categorical likelihood over the 17 grey levels of the 8x8 digits",
        "data": {"name": "digits"},
        "model": {"model": "vae", "encoder": _DIGITS_ENC, "decoder": _DIGITS_DEC, "latent_dim": 16,
                  "likelihood": "categorical", "kl_warmup": 500},
        "train": {"steps": 1500, "batch_size": 64, "lr": 2e-3, "schedule": "cosine",
                  "log_every": 100, "eval_every": 500, "sample_every": 500, "checkpoint_every": 500},
        "eval": {"k": 1000},
    },
    "vae-mnist": {
        "description": "VAE, Bernoulli likelihood on dynamically binarized MNIST-5k (28x28)",
        "data": {"name": "mnist", "binarize": "dynamic"},
        "model": {"model": "vae", **_VAE_MNIST_MODEL},
        "train": {**_VAE_MNIST_TRAIN},
        "eval": {"k": 1000, "max_examples": 500},
    },
    # the flow VAEs: vae-mnist's networks, likelihood, warm-up and step budget, one flow added
    "vae-mnist-flow-posterior": _vae_mnist_with(
        "VAE with an 8-layer planar flow posterior (amortized on the encoder's features)",
        posterior_flow={"type": "planar", "layers": 8}),
    "vae-mnist-flow-prior": _vae_mnist_with(
        "VAE with a 4-layer affine coupling flow prior (log N(f(z)) + log|det df/dz|)",
        prior_flow={"type": "coupling", "layers": 4, "hidden": 128}),
    "avb-mnist": {
        "description": "adversarial variational Bayes: implicit posterior z = g(x, eps), discriminator "
                       "T(x, z), on dynamically binarized MNIST-5k (vae-mnist's networks and budget); "
                       "log-likelihood by annealed importance sampling",
        "data": {"name": "mnist", "binarize": "dynamic"},
        "model": {"model": "avb", "encoder": _MNIST_ENC, "decoder": _MNIST_DEC,
                  "discriminator": {"name": "image.conv", "out_features": 256, "hidden": 32},
                  "latent_dim": 32, "likelihood": "bernoulli", "kl_warmup": 1000},
        "train": {**_VAE_MNIST_TRAIN},
        "eval": {"max_examples": 500, "metrics": {"mmgen.ais": _AIS_MNIST}},
    },
    "flow-digits": {
        "description": "affine coupling flow (RealNVP, 6 checkerboard couplings of 3x3 convolutions) on the "
                       "8x8 digits, uniform dequantization; NLL bound over the 17 grey levels (16 draws)",
        "data": {"name": "digits"},
        "model": {"model": "flow", "layers": 6, "hidden": 64, "mask": "checkerboard", "k": 16},
        "train": {"steps": 1500, "batch_size": 64, "lr": 1e-3, "schedule": "cosine",
                  "log_every": 100, "eval_every": 500, "sample_every": 500, "checkpoint_every": 500},
        "eval": {},
    },
    "dcgan-digits": {
        "description": "DCGAN, non-saturating loss, on the 8x8 digits (levels mapped to [-1, 1]); EMA samples",
        "data": {"name": "digits"},
        "model": _dcgan([0, 16], 32, 32, objective="non_saturating", ema_decay=0.99),
        "train": {"steps": 2000, "batch_size": 64, "optimizers": _adam(2e-4, [0.5, 0.999]),
                  "log_every": 100, "sample_every": 500, "checkpoint_every": 500},
    },
    "dcgan-mnist": {
        "description": "DCGAN, non-saturating loss, on MNIST-5k intensities (28x28); EMA samples",
        "data": {"name": "mnist", "binarize": None},
        "model": _dcgan([0, 1], 64, 32, objective="non_saturating", ema_decay=0.995),
        "train": {"steps": 2000, "batch_size": 64, "optimizers": _adam(2e-4, [0.5, 0.999]),
                  "log_every": 100, "sample_every": 500, "checkpoint_every": 500},
    },
    "wgan-gp-mnist": {
        "description": "WGAN-GP (lambda 10, 5 critic steps per generator step, no batch norm in the "
                       "critic) on MNIST-5k intensities (28x28); EMA samples",
        "data": {"name": "mnist", "binarize": None},
        "model": _dcgan([0, 1], 64, 32, batch_norm=False, objective="wgan_gp", gp_weight=10.0,
                        d_steps=5, ema_decay=0.99),
        "train": {"steps": 5000, "batch_size": 64, "optimizers": _adam(1e-4, [0.0, 0.9]),
                  "log_every": 250, "sample_every": 1000, "checkpoint_every": 1000},
    },
    "t2i-mnist": {
        "description": "text-to-image GAN-CLS + GAN-INT with conditioning augmentation and contrastive "
                       "image-text matching with hard negatives, trainable GRU text encoder, hinge loss and a "
                       "spectrally normalized discriminator, on MNIST-5k with captions (digit, thickness, "
                       "slant, size); EMA samples",
        "data": {"name": "mnist-captions"},
        "model": {"model": "text_to_image_gan", "vocab": "mnist-captions", "text_encoder": _T2I_GRU, **_T2I_GAN},
        "train": {"steps": 1500, "batch_size": 32, "num_samples": 80, "log_every": 50, "sample_every": 250,
                  "checkpoint_every": 250,
                  "optimizers": _T2I_OPTIMIZERS},
    },
    "t2i-shapes": {
        "description": "text-to-image GAN-CLS + GAN-INT with conditioning augmentation and contrastive "
                       "image-text matching with hard negatives, trainable GRU text encoder, hinge loss and a "
                       "spectrally normalized discriminator, on 32x32 procedural shapes with compositional "
                       "captions; EMA samples",
        # shape is the attribute a small discriminator learns last: it gets twice the width, the
        # generator's learning rate (at 2e-4 shape consistency stayed at 0.67) and a hard negative
        # per attribute in every batch, so every image is set against its shape-swapped caption
        "data": {"name": "shapes", "negatives": "each"},
        "model": {"model": "text_to_image_gan", "vocab": "shapes", "text_encoder": _T2I_GRU, **_T2I_GAN,
                  "kl_weight": 0.001,
                  "discriminator_hidden": 32},
        "train": {"steps": 4000, "batch_size": 32, "schedule": "cosine", "log_every": 50, "sample_every": 1000,
                  "checkpoint_every": 500,
                  "optimizers": {**_T2I_OPTIMIZERS, "discriminator": {"lr": 5e-4, "betas": [0.5, 0.999]}}},
    },
    "diffusion-digits": {
        "description": "class-conditional Gaussian diffusion (DDPM, T=1000, classifier-free guidance) on the 8x8 "
                       "digits; variational bound over their 17 grey levels",
        "data": {"name": "digits"},
        "model": {"model": "diffusion", "denoiser": {**_UNET, "channel_mult": [1, 2]}, "class_conditional": True,
                  "ema_decay": 0.999, "ema_warmup": True, "sampler": "ddpm"},
        "train": {**_DIFFUSION_TRAIN, "steps": 3000},
        "eval": {},
    },
    "diffusion-mnist": {
        "description": "Gaussian diffusion (DDPM, T=1000) on dynamically binarized MNIST-5k (28x28, 2 levels mapped "
                       "to -1 and 1); variational bound from 100 stratified timesteps, ancestral samples in 100 steps",
        "data": {"name": "mnist", "binarize": "dynamic"},
        "model": {"model": "diffusion", "denoiser": _UNET, "levels": 2, "ema_decay": 0.999, "sampler": "ddpm",
                  "sample_steps": 100, "bound_timesteps": 100},
        "train": {**_DIFFUSION_TRAIN, "steps": 4000},
        "eval": {"max_examples": 500},
    },
    "diffusion-mnist-captions": {
        "description": "caption-conditional Gaussian diffusion (DDPM, classifier-free guidance, GRU caption "
                       "encoder) on MNIST-5k with captions (digit, thickness, slant, size)",
        "data": {"name": "mnist-captions"},
        "model": _text_diffusion("mnist-captions", _UNET, 3.0),
        "train": {**_DIFFUSION_TRAIN, "steps": 4000, "num_samples": 80},
    },
    "diffusion-shapes": {
        "description": "caption-conditional Gaussian diffusion (DDPM, v-prediction with a zero terminal SNR, "
                       "classifier-free guidance, GRU caption encoder) on 32x32 procedural shapes with "
                       "compositional captions",
        "data": {"name": "shapes"},
        "model": {**_text_diffusion("shapes", {"name": "image.unet", "hidden": 16, "channel_mult": [1, 2, 4],
                                                "condition_map": "spade"}, 1.0),
                  "prediction": "v", "zero_terminal_snr": True},
        "train": {**_DIFFUSION_TRAIN, "steps": 6000, "batch_size": 32},
    },
    "pixelcnn-digits": {
        "description": "gated PixelCNN, exact likelihood over the 17 grey levels of the 8x8 digits "
                       "(small on purpose: a wider, deeper one overfits the 1,297 training images)",
        "data": {"name": "digits"},
        "model": {"model": "pixelcnn", "hidden": 32, "layers": 4, "first_kernel_size": 5},
        "train": {"steps": 1500, "batch_size": 64, "lr": 2e-3, "schedule": "cosine",
                  "log_every": 100, "eval_every": 500, "sample_every": 500, "checkpoint_every": 500},
        "eval": {},
    },
    "pixelcnn-mnist": {
        "description": "gated PixelCNN on dynamically binarized MNIST-5k (28x28, 2 levels)",
        "data": {"name": "mnist", "binarize": "dynamic"},
        "model": {"model": "pixelcnn", "levels": 2, "hidden": 32, "layers": 8},  # binarized on the fly
        "train": {"steps": 1500, "batch_size": 32, "lr": 2e-3, "schedule": "cosine",
                  "log_every": 100, "eval_every": 500, "sample_every": 500, "checkpoint_every": 500},
        "eval": {"max_examples": 500},
    },
    "vqvae-mnist": {
        "description": "VQ-VAE (7x7 grid of 32 codes) then a PixelCNN prior over the codes, on "
                       "dynamically binarized MNIST-5k; reports the VQ-VAE bound (prior NLL of codes + "
                       "reconstruction NLL)",
        "data": {"name": "mnist", "binarize": "dynamic"},
        "model": {"model": "vqvae", "num_codes": 32, "likelihood": "bernoulli", "autoencoder_steps": 2000,
                  "encoder": _VQ_ENC, "decoder": _VQ_DEC,
                  "prior": {"hidden": 32, "layers": 5, "first_kernel_size": 5}},
        "train": {"steps": 3500, "batch_size": 64, "lr": 1e-3, "log_every": 250, "eval_every": 1000,
                  "sample_every": 500, "checkpoint_every": 500},
        "eval": {"max_examples": 500},
    },
    "gumbel-vae-mnist": {
        "description": "Gumbel-softmax VAE, 20 categorical latents x 10 categories, tau 1 -> 0.5, on "
                       "dynamically binarized MNIST-5k",
        "data": {"name": "mnist", "binarize": "dynamic"},
        "model": {"model": "gumbel_vae", "encoder": _MNIST_ENC, "decoder": {**_MNIST_DEC, "in_features": 200},
                  "latents": 20, "categories": 10, "likelihood": "bernoulli", "tau_start": 1.0,
                  "tau_min": 0.5, "anneal_rate": 3e-4},
        "train": {"steps": 4000, "batch_size": 64, "lr": 1e-3, "schedule": "cosine",
                  "log_every": 200, "eval_every": 1000, "sample_every": 1000, "checkpoint_every": 1000},
        "eval": {"k": 1000, "max_examples": 500},
    },
    "cvae-mnist": {
        "description": "conditional VAE p(x | digit class) on dynamically binarized MNIST-5k",
        "data": {"name": "mnist", "binarize": "dynamic"},
        "model": {"model": "cvae", "encoder": _MNIST_ENC, "decoder": {**_MNIST_DEC, "in_features": 42},
                  "latent_dim": 32, "likelihood": "bernoulli"},
        "train": {"steps": 4000, "batch_size": 64, "lr": 1e-3, "schedule": "cosine",
                  "log_every": 200, "eval_every": 1000, "sample_every": 1000, "checkpoint_every": 1000},
        "eval": {"max_examples": 500},
    },
    "cvae-mnist-text": {
        "description": "conditional VAE p(x | caption) on MNIST-5k captions (digit, thickness, slant, size "
                       "in words; intensities, Bernoulli cross-entropy), GRU caption encoder trained with it",
        "data": {"name": "mnist-captions"},
        "model": {"model": "cvae", "encoder": _MNIST_ENC, "decoder": {**_MNIST_DEC, "in_features": 64},
                  "latent_dim": 32, "likelihood": "bernoulli", "vocab": "mnist-captions",
                  "text_encoder": {"name": "text.gru", "out_features": 32, "embed_dim": 32, "hidden": 64}},
        "train": {"steps": 3000, "batch_size": 64, "lr": 1e-3, "schedule": "cosine",
                  "log_every": 200, "eval_every": 1000, "sample_every": 1000, "checkpoint_every": 1000},
        "eval": {"max_examples": 500},
    },
    "m2-mnist-100": {
        "description": "semi-supervised VAE M2 with 100 labels (10 per class) on dynamically binarized "
                       "MNIST-5k; reports the test error",
        "data": {"name": "mnist", "binarize": "dynamic", "labels": 100},
        "model": {"model": "m2", "encoder": _MNIST_ENC,
                  "decoder": {**_MNIST_DEC, "in_features": 42, "hidden": 16},  # runs once per class
                  "classifier": _MNIST_ENC, "latent_dim": 32, "likelihood": "bernoulli",
                  "alpha": 20.0},
        "train": {"steps": 2000, "batch_size": 32, "lr": 1e-3, "schedule": "cosine",
                  "log_every": 200, "eval_every": 1000, "sample_every": 1000, "checkpoint_every": 1000},
        "eval": {"max_examples": 500},
    },
    "sentence-vae-lee": {
        "description": "sentence VAE (Bowman et al. 2016): GRU encoder/decoder, logistic KL annealing, "
                       "word dropout, on the news sentences of gensim's Lee corpus (<= 40 tokens)",
        "data": {"name": "lee", "max_length": 40, "min_count": 2},
        "model": {"model": "sentence_vae", "vocab": {"name": "lee", "max_length": 40, "min_count": 2},
                  "encoder": {"embed_dim": 128, "hidden": 128, "out_features": 128},
                  "decoder": {"embed_dim": 128, "hidden": 256}, "latent_dim": 32,
                  "kl_anneal": "logistic", "kl_warmup": 600, "word_dropout": 0.5, "max_length": 41},
        "train": {"steps": 1200, "batch_size": 32, "lr": 1e-3, "schedule": "cosine", "grad_clip": 5.0,
                  "num_samples": 10, "log_every": 100, "eval_every": 400, "sample_every": 400,
                  "checkpoint_every": 400},
        "eval": {"k": 100},
    },
    "mfm-digits": {
        "description": "Multimodal Factorization Model over MNIST-5k images + spoken digits (unseen test "
                       "voices) + captions: label accuracy from every modality subset, cross-modal generation",
        "data": {"name": "mnist-trimodal"},
        "model": {"model": "mfm", "modalities": _mfm_trimodal(), "zy_dim": 16, "za_dim": 8,
                  "hidden": 128, "prior": "kl", "lam": 1.0, "label_weight": 100.0, "surrogate_weight": 1.0},
        "train": {"steps": 1500, "batch_size": 64, "lr": 1e-3, "schedule": "cosine", "num_samples": 20,
                  "log_every": 100, "eval_every": 500, "sample_every": 750, "checkpoint_every": 500},
        "eval": {"judges": True, "judge_steps": 300, "pocketsphinx": True},
    },
    "mvae-trimodal": _multimodal_vae("mvae", "MVAE (product of experts, sub-sampled ELBO)", random_subsets=1),
    "mmvae-trimodal": _multimodal_vae("mmvae", "MMVAE (mixture of experts, stratified DReG IWAE, k=4)", k=4),
    # draws="all" chosen on val over 3 seeds (quality_mopoe_trimodal_draws_all.json against the
    # stratified draw's quality_mopoe_trimodal.json at 8b88e15): mean cross-modal coherence 0.926 vs
    # 0.923, image -> caption 0.952 vs 0.929, joint log-likelihood -2248 vs -2270 nats
    "mopoe-trimodal": _multimodal_vae("mopoe", "MoPoE-VAE (mixture of products of experts)", draws="all"),
    # mopoe-trimodal with a 16-dim private latent per modality (docs/multimodal-vae.md#private-latents).
    # The auxiliary prior's scale was chosen on val with instance captions (data.captions=instance,
    # 4000 steps, seed 0, caption -> image coherence on thickness, slant and size, the mean of four
    # draws) over 8, 20 and 50 (3 stopped at 2000 steps, behind 8), in single runs without a record;
    # larger scales made the digits sharper (size and FID better) and thickness slightly worse
    "mopoe-private-trimodal": _multimodal_vae(
        "mopoe", "MoPoE-VAE with a private latent per modality (MMVAE+'s modality-specific latents)",
        draws="all", private_dim=16, private_scale=50.0),
    "mfm-trimodal-unsup": {
        "description": "MFM without labels (no label head; surrogate inference by matching the full "
                       "posterior) on mnist-trimodal, beside the multimodal VAEs",
        "data": {"name": "mnist-trimodal"},
        "model": {"model": "mfm", "modalities": _weighted_trimodal(), "num_classes": 0, "zy_dim": 16,
                  "za_dim": 8, "hidden": 128, "prior": "kl", "lam": _MULTIMODAL_BETA, "label_weight": 0.0,
                  "surrogate_weight": 1.0},
        "train": copy.deepcopy(_MULTIMODAL_TRAIN),
        "eval": copy.deepcopy(_MULTIMODAL_EVAL),
    },
}


def get(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])
