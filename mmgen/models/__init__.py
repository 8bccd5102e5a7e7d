"""Model families. Each takes modules (or component specs), exposes ``loss`` (GANs: ``training_steps``),
``sample`` and, where it has one, ``log_prob`` / ``nll``; saves as ``config.json`` + ``model.safetensors``.

Families are ``model`` components of the plugin registry: mmgen's own register through its built-in
plugin (entry point ``mmgen``) as ``mmgen.vae``, ``mmgen.pixelcnn``, ... and a plugin adds one with
``registry.add("model", "myplugin.name", cls)``. A config names a family by its registered name; a
bare name (``"vae"``, what saved configs and presets use) means mmgen's own ``mmgen.<name>``.
"""
from __future__ import annotations

import difflib
import inspect

from mmgen.plugins import UnknownComponentError
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
from mmgen.models.mvae import MVAE
from mmgen.models.mmvae import MMVAE
from mmgen.models.mopoe import MoPoE
from mmgen.models.flow import CouplingFlow
from mmgen.models.avb import AVB
from mmgen.models.diffusion import Diffusion

BUILTIN = "mmgen"  # the built-in plugin's name and the namespace of mmgen's own families


def component_name(name: str) -> str:
    """The registered name of a model name: ``"vae"`` -> ``"mmgen.vae"``; a namespaced name as it is."""
    return name if "." in name else f"{BUILTIN}.{name}"


def short_name(name: str) -> str:
    """The name configs use: mmgen's own families by their short name, others by their full name."""
    prefix = f"{BUILTIN}."
    return name[len(prefix):] if name.startswith(prefix) else name


def _ensure_builtin() -> bool:
    """Register the built-in plugin if it is not (entry points not loaded: MMGEN_DISABLE_PLUGIN_AUTOLOAD,
    or MMGEN_PLUGINS leaving it out), so mmgen's own families always resolve, as its own datasets
    do. True if it was registered now."""
    from mmgen import builtins, plugins
    if plugins.get_plugin_manager().get_plugin(BUILTIN) is not None:
        return False
    plugins.register(builtins, BUILTIN)
    return True


def registered() -> dict[str, type]:
    """The model families a config may name, ``{name: class}`` (a new dict each call): mmgen's own by
    short name, the plugins' by their registered name."""
    from mmgen import plugins
    _ensure_builtin()
    return {short_name(c.name): c.obj for c in plugins.list_components("model")}


class UnknownModelError(UnknownComponentError, ValueError):
    """No registered model family has that name (a ValueError too, as any bad model config)."""


def get(name: str):
    """The registered ``model`` component (:class:`mmgen.plugins.Component`) for a config's model name.
    An unknown name raises :class:`UnknownModelError` (an UnknownComponentError and a ValueError)
    listing the registered names, with the closest match."""
    from mmgen import plugins
    if not isinstance(name, str):
        raise TypeError(f"a model name must be a string like 'vae' or 'myplugin.name', got {name!r}")
    full = component_name(name)
    try:
        return plugins.get_component("model", full)
    except plugins.UnknownComponentError:
        if full.startswith(f"{BUILTIN}.") and _ensure_builtin():
            return get(name)
    names = sorted(registered())
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    failed = sorted({f.plugin for f in plugins.failures()})
    note = (f"; plugins that failed to load: {', '.join(failed)} (run `mmgen plugins doctor`)"
            if failed else "")
    raise UnknownModelError(f"unknown model {name!r}{hint} (registered models: "
                            f"{', '.join(names) or 'none'}){note}")


def config_name(config: dict) -> str:
    """The model name of a model config: its ``"model"`` key, or ``"name"`` (an alias in run configs)."""
    if not isinstance(config, dict):
        raise ValueError(f"a model config must be a dict with a 'model' key, got {type(config).__name__}")
    if "model" in config and "name" in config:
        raise ValueError(f"a model config names its family once: 'model' ({config['model']!r}) or its alias "
                         f"'name' ({config['name']!r}), not both")
    if "model" not in config and "name" not in config:
        raise ValueError("a model config must be a dict with a 'model' key naming a registered model: "
                         + ", ".join(sorted(registered())))
    return config["model"] if "model" in config else config["name"]


def from_config(config: dict, **modules):
    """Build a model from its config (as saved in config.json, or a run config's model section):
    ``{"model": NAME, **constructor options}`` (``"name"`` is accepted for ``"model"``), NAME a
    registered ``model`` component (see :func:`get`). Components saved as modules rather than specs
    must be passed as keyword arguments (e.g. ``encoder=my_encoder``). The built model's
    ``config["model"]`` holds the name it was built from (filled in if the class left it out)."""
    name = config_name(config)
    component = get(name)
    cls = component.obj
    kwargs = {k: v for k, v in config.items() if k not in ("model", "name")}
    for key, value in list(kwargs.items()):
        if value is None and key in modules:
            kwargs[key] = modules.pop(key)
        elif value is None:
            raise ValueError(f"model config key {key!r} is null: that component was a module when the "
                             f"model was saved; pass it again: from_pretrained(path, {key}=module)")
    if modules:
        raise ValueError(f"unexpected modules {sorted(modules)} for model {name!r}")
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature: let the call check
        parameters = None
    if parameters is not None and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        accepted = [p for p in parameters if p != "self"]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"model {name!r} has no option(s) {unknown}; accepted: {accepted}")
    model = cls(**kwargs)
    if not isinstance(model, GenerativeModel):
        raise TypeError(f"model {name!r} (plugin {component.plugin!r}) built a {type(model).__name__}, which "
                        "is not an mmgen.models.GenerativeModel (subclass it to train, save and load it)")
    config_of_model = getattr(model, "config", None)
    if config_of_model is None:  # the options it was built from are its config
        model.config = {"model": name, **{k: v for k, v in config.items() if k not in ("model", "name")}}
    elif isinstance(config_of_model, dict) and "model" not in config_of_model:
        config_of_model["model"] = name
    return model


def sampling_settings(config: dict) -> dict:
    """The sampling settings a model config sets, ``{option: value}`` for each of its family's
    ``SAMPLING_OPTIONS`` (the constructor's default where the config leaves one out); {} for a
    family with none. Two run configs that differ only in these train the same model."""
    cls = get(config_name(config)).obj
    options = getattr(cls, "SAMPLING_OPTIONS", ())
    if not options:
        return {}
    parameters = inspect.signature(cls).parameters
    return {key: config.get(key, parameters[key].default if key in parameters else None) for key in options}


def __getattr__(attr):
    if attr == "MODELS":
        raise AttributeError("mmgen.models.MODELS was replaced by the plugin registry: "
                             "mmgen.models.registered() lists the model families, mmgen.models.get(name) "
                             "finds one, registry.add('model', 'myplugin.name', cls) adds one")
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["GenerativeModel", "VAE", "PixelCNN", "GAN", "VQVAE", "GumbelVAE", "CVAE", "M2", "SentenceVAE",
           "TextToImageGAN", "MFM", "MVAE", "MMVAE", "MoPoE", "CouplingFlow", "AVB", "Diffusion", "from_config", "get", "registered", "config_name",
           "sampling_settings",
           "component_name", "short_name", "UnknownModelError"]
