"""Model families. Each takes modules (or component specs), exposes ``loss`` (GANs: ``training_steps``),
``sample`` and, where it has one, ``log_prob`` / ``nll``; saves as ``config.json`` + ``model.safetensors``."""
import inspect

from mmgen.models.base import GenerativeModel
from mmgen.models.vae import VAE
from mmgen.models.pixelcnn import PixelCNN
from mmgen.models.gan import GAN
from mmgen.models.vqvae import VQVAE
from mmgen.models.gumbel_vae import GumbelVAE
from mmgen.models.cvae import CVAE
from mmgen.models.m2 import M2
from mmgen.models.text_to_image import TextToImageGAN
from mmgen.models.sentence_vae import SentenceVAE
from mmgen.models.mfm import MFM

# config["model"] -> class; from_config / from_pretrained rebuild models through this table.
MODELS = {"vae": VAE, "pixelcnn": PixelCNN, "gan": GAN,
          "vqvae": VQVAE,
          "gumbel_vae": GumbelVAE,
          "cvae": CVAE,
          "m2": M2,
          "text_to_image_gan": TextToImageGAN,
          "sentence_vae": SentenceVAE,
          "mfm": MFM}


def from_config(config: dict, **modules):
    """Build a model from its config (as saved in config.json). Components saved as modules rather
    than specs must be passed as keyword arguments (e.g. ``encoder=my_encoder``)."""
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError("a model config must be a dict with a 'model' key naming one of: "
                         + ", ".join(sorted(MODELS)))
    name = config["model"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    kwargs = {k: v for k, v in config.items() if k != "model"}
    for key, value in list(kwargs.items()):
        if value is None and key in modules:
            kwargs[key] = modules.pop(key)
        elif value is None:
            raise ValueError(f"model config key {key!r} is null: that component was a module when the "
                             f"model was saved; pass it again: from_pretrained(path, {key}=module)")
    if modules:
        raise ValueError(f"unexpected modules {sorted(modules)} for model {name!r}")
    accepted = [p for p in inspect.signature(MODELS[name]).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {unknown}; accepted: {accepted}")
    return MODELS[name](**kwargs)


__all__ = ["GenerativeModel", "VAE", "PixelCNN", "GAN", "VQVAE", "GumbelVAE", "CVAE", "M2", "SentenceVAE", "TextToImageGAN", "MFM", "MODELS", "from_config"]
