"""Ready-made run configs (``mmgen train --preset NAME``): data, model and training options.

A run config is JSON: ``{"data": {"name": ..., **kwargs}, "model": <model config>,
"train": <TrainConfig options>, "eval": {"k": ..., "max_examples": ...}}``.
"""
from __future__ import annotations

import copy


def _conv(size: int, channels: int, latent: int, params: int, hidden: int) -> tuple[dict, dict]:
    encoder = {"name": "image.conv", "in_channels": channels, "size": size, "out_features": 256,
               "hidden": hidden}
    decoder = {"name": "image.conv", "in_features": latent, "out_channels": channels, "size": size,
               "params_per_channel": params, "hidden": hidden}
    return encoder, decoder


_DIGITS_ENC, _DIGITS_DEC = _conv(8, 1, 16, 17, 64)
_MNIST_ENC, _MNIST_DEC = _conv(28, 1, 32, 1, 32)

PRESETS: dict[str, dict] = {
    "vae-digits": {
        "description": "VAE, categorical likelihood over the 17 grey levels of the 8x8 digits",
        "data": {"name": "digits"},
        "model": {"model": "vae", "encoder": _DIGITS_ENC, "decoder": _DIGITS_DEC, "latent_dim": 16,
                  "likelihood": {"name": "categorical", "levels": 17}},
        "train": {"steps": 6000, "batch_size": 64, "lr": 2e-3, "schedule": "cosine",
                  "log_every": 200, "eval_every": 1000, "sample_every": 1000, "checkpoint_every": 1000},
        "eval": {"k": 1000},
    },
    "vae-mnist": {
        "description": "VAE, Bernoulli likelihood on dynamically binarized MNIST-5k (28x28)",
        "data": {"name": "mnist", "binarize": "dynamic"},
        "model": {"model": "vae", "encoder": _MNIST_ENC, "decoder": _MNIST_DEC, "latent_dim": 32,
                  "likelihood": "bernoulli"},
        "train": {"steps": 4000, "batch_size": 64, "lr": 1e-3, "schedule": "cosine",
                  "log_every": 200, "eval_every": 1000, "sample_every": 1000, "checkpoint_every": 1000},
        "eval": {"k": 1000, "max_examples": 500},
    },
}


def get(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])
