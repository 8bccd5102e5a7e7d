"""mmgen's built-in plugin (entry point ``mmgen``): registers mmgen's own datasets as ``dataset``
components (``image.digits``, ``image.mnist``, ``text.lee``, ``multimodal.mnist-trimodal``, ...) and
its model families as ``model`` components (``mmgen.vae``, ``mmgen.pixelcnn``, ..., ``mmgen.mfm``;
configs name them by their short name, ``"vae"``), through the same hook and entry points as every
other plugin."""
from mmgen.hookspecs import hookimpl


def _first_line(obj, default: str) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else default


def model_families() -> dict:
    """mmgen's own model families, short name -> class (registered as ``mmgen.<short name>``)."""
    from mmgen import models
    return {"vae": models.VAE, "pixelcnn": models.PixelCNN, "gan": models.GAN, "vqvae": models.VQVAE,
            "gumbel_vae": models.GumbelVAE, "cvae": models.CVAE, "m2": models.M2,
            "text_to_image_gan": models.TextToImageGAN, "sentence_vae": models.SentenceVAE,
            "mfm": models.MFM}


@hookimpl
def mmgen_register(registry):
    from mmgen.data import catalog
    for name, component in catalog.component_names().items():
        factory = catalog.DATASETS[name]
        registry.add("dataset", component, factory, modality=catalog.MODALITY[name], short_name=name,
                     description=_first_line(factory, name))
    for name, cls in model_families().items():
        registry.add("model", f"mmgen.{name}", cls, short_name=name, description=_first_line(cls, name))
