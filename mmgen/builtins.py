"""mmgen's built-in plugin (entry point ``mmgen``): registers mmgen's own datasets as ``dataset``
components (``image.digits``, ``image.mnist``, ``text.lee``, ``multimodal.mnist-trimodal``, ...) and
its model families as ``model`` components (``mmgen.vae``, ``mmgen.pixelcnn``, ..., ``mmgen.mfm``;
configs name them by their short name, ``"vae"``) and its metric ``mmgen.ais`` (annealed importance
sampling, :mod:`mmgen.eval.ais`), through the same hook and entry points as every other plugin."""
from mmgen.hookspecs import hookimpl


def _first_line(obj, default: str) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else default


FAMILIES = {  # short name -> (class name in mmgen.models, description)
    "vae": ("VAE", "Gaussian-latent VAE (ELBO, IWAE NLL)"),
    "pixelcnn": ("PixelCNN", "gated PixelCNN, exact NLL"),
    "gan": ("GAN", "GAN / WGAN-GP / DCGAN, optionally class-conditional"),
    "vqvae": ("VQVAE", "VQ-VAE with a PixelCNN prior over its codes"),
    "gumbel_vae": ("GumbelVAE", "VAE with Gumbel-softmax categorical latents"),
    "cvae": ("CVAE", "conditional VAE (labels or captions)"),
    "m2": ("M2", "semi-supervised VAE (Kingma et al. M2)"),
    "text_to_image_gan": ("TextToImageGAN", "text-to-image GAN (captions -> images)"),
    "sentence_vae": ("SentenceVAE", "Gaussian-latent VAE over sentences"),
    "mfm": ("MFM", "Multimodal Factorization Model"),
    "mvae": ("MVAE", "multimodal VAE, product-of-experts posterior (Wu & Goodman 2018)"),
    "mmvae": ("MMVAE", "multimodal VAE, mixture-of-experts posterior, DReG IWAE (Shi et al. 2019)"),
    "mopoe": ("MoPoE", "multimodal VAE, mixture of products of experts (Sutter et al. 2021)"),
    "flow": ("CouplingFlow", "affine coupling flow (NICE / RealNVP), dequantized NLL"),
    "avb": ("AVB", "adversarial variational Bayes: implicit posterior, discriminator T(x, z)"),
    "diffusion": ("Diffusion", "Gaussian diffusion (DDPM / DDIM), optionally class- or caption-conditional"),
}


def model_families() -> dict:
    """mmgen's own model families, short name -> class (registered as ``mmgen.<short name>``)."""
    from mmgen import models
    return {name: getattr(models, cls) for name, (cls, _) in FAMILIES.items()}


@hookimpl
def mmgen_register(registry):
    from mmgen.data import catalog
    for name, component in catalog.component_names().items():
        factory = catalog.DATASETS[name]
        registry.add("dataset", component, factory, modality=catalog.MODALITY[name], short_name=name,
                     description=_first_line(factory, name))
    for name, cls in model_families().items():
        registry.add("model", f"mmgen.{name}", cls, short_name=name,
                     description=f"{FAMILIES[name][1]} (\"{name}\" in configs)")
    from mmgen.eval import ais
    registry.add("metric", "mmgen.ais", ais.metric,
                 description="annealed importance sampling NLL (nats, bits/dim) of latent-variable models")
