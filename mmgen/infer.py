"""Shapes from the data: a model config filled in from the training data's ``data_info()``.

A run config states each number once: the image size and channels, the log-mel bins and frames,
the vocabulary, the number of classes and of grey levels are what the data says they are, so the
config leaves them out and :func:`infer_model_config` fills them in before the model is built (the
filled config is what the model saves in ``config.json``; ``from_pretrained`` needs no data).

The data's description, ``dataset.data_info()``, is a plain dict::

    {"modalities": {key: {"modality": "image", "channels": C, "size": S}
                         | {"modality": "audio", "n_mels": M, "frames": F, "wave": {...}}
                         | {"modality": "text", "vocab_size": V, "vocabulary": [...], "length": T}},
     "num_classes": int | None, "levels": int | None}

where ``key`` is the batch key: ``"x"`` for single-modality data, the modality's name
(``"image"``, ``"audio"``, ...) for multimodal data. ``None`` or a missing field means "not known".

Who says what comes from the data:

* a **component** (plugin registry entry) declares in its meta which constructor arguments are
  fields of its modality's entry: ``registry.add("encoder", "image.conv", ConvEncoder,
  modality="image", infer={"in_channels": "channels", "size": "size"})``;
* a **model** class either defines a classmethod ``infer_config(config, info) -> config`` (MFM,
  CVAE, the text-to-image GAN), or declares ``data_components = {config key: registry kind}``
  (components built on the ``"x"`` entry, e.g. a VAE's ``{"encoder": "encoder", "decoder":
  "decoder"}``) and ``data_fields = {config key: path}`` (``"num_classes"``, ``"levels"``, or
  ``"x.size"`` for a field of the ``"x"`` entry); :func:`infer_from_declarations` then fills those
  and a categorical likelihood's ``levels`` (and the decoder's ``params_per_channel``, when the
  likelihood needs more than one number per value).

A value the config states and the data also gives must agree: a model that does not fit its data
fails before training, with both values named (leave the key out to take the data's).
"""
from __future__ import annotations

import copy
import inspect

__all__ = ["data_info", "infer_model_config", "infer_from_declarations", "fill_component", "fill_value",
           "fill_likelihood", "fill_caption_vocabulary", "entry", "model_class"]


def data_info(dataset) -> dict | None:
    """``dataset.data_info()`` (every mmgen dataset has it); None for data without it, such as a
    user's plain torch ``Dataset`` (nothing is inferred then)."""
    describe = getattr(dataset, "data_info", None)
    return describe() if callable(describe) else None


def entry(info: dict | None, key: str) -> dict | None:
    """The data info of batch key ``key`` (None if the data does not describe it)."""
    if not info:
        return None
    found = (info.get("modalities") or {}).get(key)
    return found if isinstance(found, dict) else None


def model_class(config: dict):
    """The class a model config names."""
    import mmgen.models as models
    return models.get(models.config_name(config)).obj


def infer_model_config(config: dict, info: dict | None) -> dict:
    """A copy of the model config ``config`` with what the data gives filled in (see the module docs);
    ``info`` None (data that does not describe itself) leaves it as it is."""
    config = copy.deepcopy(config)
    if not info or not isinstance(config, dict):
        return config
    try:
        cls = model_class(config)
    except (LookupError, KeyError, ValueError, TypeError):
        return config  # from_config names the bad model name
    infer = getattr(cls, "infer_config", None)
    return infer(config, info) if callable(infer) else infer_from_declarations(cls, config, info)


def _same(a, b) -> bool:
    norm = (lambda v: list(v) if isinstance(v, tuple) else v)
    return norm(a) == norm(b)


def _plain(value):
    """JSON-like copy (tuples as lists) of a data value, for a config."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def fill_value(config: dict, key: str, value, what: str, field: str | None = None) -> dict:
    """``config[key] = value`` unless ``value`` is None (unknown); a stated value must agree."""
    if value is None:
        return config
    if key in config and config[key] is not None:
        if not _same(config[key], value):
            shown = f"{field or key}={value!r}"
            raise ValueError(f"{what}: {key}={config[key]!r} does not fit the data, which gives {shown}; "
                             f"leave {key!r} out to take it from the data")
        return config
    config[key] = _plain(value)
    return config


def fill_component(spec, kind: str, data: dict | None, what: str):
    """A component spec ``{"name": ..., **kwargs}`` with the arguments its registry meta ``infer``
    maps to fields of ``data`` filled in. Modules, names the registry does not know (the build then
    names the error) and components without ``infer`` are returned as they are."""
    if not isinstance(spec, dict) or "name" not in spec or not data:
        return spec
    from mmgen import plugins
    try:
        component = plugins.get_component(spec.get("kind", kind), spec["name"])
    except (LookupError, ValueError):
        return spec
    infer = component.meta.get("infer") or {}
    modality, given = component.meta.get("modality"), data.get("modality")
    if infer and modality and given and modality != given:
        raise ValueError(f"{what} {spec['name']!r} is a {modality} component but the data it is built "
                         f"for is {given}")
    spec = dict(spec)
    for argument, field in infer.items():
        fill_value(spec, argument, data.get(field), f"{what} {spec['name']!r}", field)
    return spec


def fill_likelihood(spec, levels: int | None, what: str):
    """A categorical likelihood gets the data's ``levels`` (a stated one must agree)."""
    if levels is None:
        return spec
    if spec == "categorical":
        spec = {"name": "categorical"}
    if isinstance(spec, dict) and spec.get("name") == "categorical":
        spec = fill_value(dict(spec), "levels", levels, f"{what} likelihood")
    return spec


def _params_per_value(spec) -> int | None:
    from mmgen import likelihoods
    try:
        if isinstance(spec, str):
            return likelihoods.get(spec).params_per_value
        if isinstance(spec, dict):
            kwargs = dict(spec)
            return likelihoods.get(kwargs.pop("name"), **kwargs).params_per_value
    except (KeyError, LookupError, ValueError, TypeError):
        return None  # the model names the bad likelihood
    return None


def _takes(kind: str, name, argument: str) -> bool:
    from mmgen import plugins
    try:
        obj = plugins.get_component(kind, name).obj
        return argument in inspect.signature(obj).parameters
    except (LookupError, ValueError, TypeError):
        return False


def fill_decoder_params(decoder, likelihood, what: str):
    """A decoder spec taking ``params_per_channel`` gets the likelihood's ``params_per_value`` when
    that is not 1 (the decoders' default), e.g. ``levels`` for a categorical likelihood."""
    per_value = _params_per_value(likelihood)
    if not isinstance(decoder, dict) or per_value in (None, 1) or "params_per_channel" in decoder:
        return decoder
    if _takes("decoder", decoder.get("name"), "params_per_channel"):
        decoder = {**decoder, "params_per_channel": per_value}
    return decoder


def fill_caption_vocabulary(config: dict, info: dict) -> dict:
    """A caption-conditioned model (``text_encoder`` of token ids) without a ``vocab`` gets the
    vocabulary of the data's captions (``info["modalities"]["captions"]``, built on the train split),
    and one without ``prompts`` the captions' default prompts."""
    spec = config.get("text_encoder")
    captions = entry(info, "captions") or {}
    if (config.get("vocab") is None and captions.get("vocabulary") and isinstance(spec, dict)
            and _takes("text_encoder", spec.get("name"), "vocab_size")):
        config["vocab"] = list(captions["vocabulary"])
    if config.get("prompts") is None and captions.get("prompts") and "text_encoder" in config:
        config["prompts"] = list(captions["prompts"])
    return config


def _lookup(info: dict, path: str):
    if "." in path:
        key, field = path.split(".", 1)
        return (entry(info, key) or {}).get(field)
    return info.get(path)


def infer_from_declarations(cls, config: dict, info: dict) -> dict:
    """The default inference of a model class from its ``data_components`` and ``data_fields``
    (see the module docs); every component is built on the ``"x"`` entry of the data."""
    name = cls.__name__
    x = entry(info, "x")
    for key, kind in getattr(cls, "data_components", {}).items():
        if key in config:
            config[key] = fill_component(config[key], kind, x, f"{name} {key}")
    for key, path in getattr(cls, "data_fields", {}).items():
        fill_value(config, key, _lookup(info, path), name, path)
    if "likelihood" in config:
        config["likelihood"] = fill_likelihood(config["likelihood"], info.get("levels"), name)
        if "decoder" in config:
            config["decoder"] = fill_decoder_params(config["decoder"], config["likelihood"], f"{name} decoder")
    return config
