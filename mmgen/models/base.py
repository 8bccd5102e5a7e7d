"""What every mmgen model shares: a JSON config and saving as ``config.json`` + ``model.safetensors``."""
from __future__ import annotations

import contextlib

import json
import os
from typing import Callable, Iterable, NamedTuple, NoReturn

import torch
from torch import nn

from mmgen.io import atomic_path, atomic_write_bytes

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def raise_with_context(exc: Exception, context: str) -> NoReturn:
    """Raise ``exc`` again, of the same type where it can be, with ``"context: "`` before its message."""
    message = f"{context}: {exc}"
    try:
        error = type(exc)(message)
    except Exception:  # an exception type whose constructor takes something else than a message
        error = ValueError(message)
    raise error from exc


def component(spec_or_module, kind: str, what: str):
    """(module, spec): build a component from a spec ``{"name": ..., **kwargs}`` or take a module
    as it is (its spec is then None: such a model saves, but reloads only if given the module)."""
    if isinstance(spec_or_module, nn.Module):
        return spec_or_module, None
    if isinstance(spec_or_module, dict):
        import mmgen
        spec = dict(spec_or_module)
        if "name" not in spec:
            names = sorted(c.name for c in mmgen.list_components(kind))
            raise ValueError(f"{what}: a component spec needs a 'name' (registered {kind} names: "
                             f"{', '.join(names) or 'none'}), got keys {sorted(spec)}")
        name = spec.pop("name")
        spec.pop("kind", None)
        try:
            module = mmgen.build(kind, name, **spec)
        except (ValueError, TypeError, LookupError) as exc:
            raise_with_context(exc, what)
        return module, {"name": name, **spec}
    raise TypeError(f"{what} must be an nn.Module or a spec dict {{'name': ..., **kwargs}}, got "
                    f"{type(spec_or_module).__name__}")


class TrainingStep(NamedTuple):
    """One optimizer of a model trained by several (a GAN's discriminator and generator).

    A model without a single ``loss`` defines ``training_steps() -> list[TrainingStep]``; on every
    batch the trainer runs, in list order, each step whose ``every`` divides the batch number:
    ``loss(batch)`` (``batch`` is the dataset's dict on the device), one update of ``parameters``
    with the step's own optimizer (options ``train.optimizers[name]``), then ``after()`` if given.
    """

    name: str
    parameters: Iterable[torch.nn.Parameter]
    loss: Callable[[dict], torch.Tensor]
    every: int = 1
    after: Callable[[], None] | None = None


def batch_condition(model, batch: dict, rows: int | None = None, device=None) -> dict:
    """The condition that ``model.loss`` / ``elbo`` take from a batch: ``{"y": batch[key]}`` for a
    model with ``condition_on_labels``, where ``key`` is its ``condition_key`` ("y": the labels,
    by default; "captions" for a caption-conditioned CVAE), cut to the first ``rows`` examples and
    moved to ``device``; ``{}`` for other models."""
    if not getattr(model, "condition_on_labels", False):
        return {}
    key = getattr(model, "condition_key", "y")
    value = batch.get(key)
    if value is None:
        raise ValueError(f"{type(model).__name__} is conditioned on the batch field {key!r} but the data "
                         f"has none (fields: {sorted(k for k, v in batch.items() if v is not None)})")
    if rows is not None:
        value = value[:rows]
    if device is not None and isinstance(value, torch.Tensor):
        value = value.to(device)
    return {"y": value}


class GenerativeModel(nn.Module):
    """Base class of every model family, mmgen's own and the plugins'.

    Contract:

    * The family is a ``model`` component of the plugin registry: mmgen's own are registered by its
      built-in plugin as ``mmgen.<name>``, a plugin's with ``registry.add("model", "myplugin.name",
      cls)``. ``mmgen.models.from_config`` builds it as ``cls(**options)`` from a config
      ``{"model": NAME, **options}`` (a run config's model section, or a saved ``config.json``).
    * ``self.config`` is the JSON-serializable config that rebuilds the model: the constructor
      options (components as specs) and, under ``"model"``, its registered name (mmgen's own write
      the short name, ``"vae"``, which means ``mmgen.vae``). A subclass may leave it out: a model
      built by ``from_config`` gets the options it was built from as its config, and the name is
      filled in if missing; ``save_pretrained`` fills a missing ``"model"`` from the registry (the
      one name the class is registered under), and refuses to save when it cannot.
    * ``loss(x, **cond)`` (or ``training_steps()``, see :class:`TrainingStep`) trains it, ``sample(n,
      generator=...)`` draws examples shaped like the data (in the data's units; ``mmgen sample``
      writes images ``[n, C, H, W]`` as a PNG grid) unless the model writes its own files with
      ``write_samples(prefix, n, generator, data=...)``; ``elbo`` / ``nll`` / ``log_prob`` (in nats)
      where it has a likelihood are what ``mmgen eval`` measures, besides registered metrics.
    * ``SAMPLING_OPTIONS`` names the constructor options that only set ``sample``'s defaults
      (diffusion: ``sampler``, ``sample_steps``, ``guidance_scale``), each kept in the attribute of
      the same name. A run trained with other values of them is the same trained run: ``mmgen
      record`` reuses it and evaluates it under the config's values (:meth:`sampled_with`).
    """

    config: dict
    SAMPLING_OPTIONS: tuple[str, ...] = ()

    def sampling_settings(self, overrides: dict | None = None) -> dict:
        """This model's sampling settings ``{option: value}`` (``SAMPLING_OPTIONS``, read from its
        attributes) with ``overrides`` applied and checked by :meth:`check_sampling_settings`; an
        option it does not have raises a ValueError naming the ones it has."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.SAMPLING_OPTIONS))
        if unknown:
            has = ", ".join(self.SAMPLING_OPTIONS) or "none"
            raise ValueError(f"sampling option(s) {', '.join(unknown)}: a {type(self).__name__} has no such "
                             f"setting (its sampling options: {has})")
        settings = {key: getattr(self, key) for key in self.SAMPLING_OPTIONS}
        settings.update(overrides)
        self.check_sampling_settings(settings)
        return settings

    def check_sampling_settings(self, settings: dict) -> None:
        """Raise a ValueError naming a bad value of ``settings`` (:meth:`sampling_settings`)."""

    @contextlib.contextmanager
    def sampled_with(self, overrides: dict | None = None):
        """A context in which ``sample`` defaults to the sampling settings with ``overrides``
        (:meth:`sampling_settings`, which it yields); the model's own come back on leaving it."""
        settings = self.sampling_settings(overrides)
        before = {key: getattr(self, key) for key in settings}
        try:
            for key, value in settings.items():
                setattr(self, key, value)
            yield settings
        finally:
            for key, value in before.items():
                setattr(self, key, value)

    def save_pretrained(self, path: str) -> None:
        """Write ``config.json`` and ``model.safetensors`` into the folder ``path`` (atomically each)."""
        from safetensors.torch import save_model
        self._fill_model_name()
        os.makedirs(path, exist_ok=True)
        with atomic_path(os.path.join(path, WEIGHTS_FILE)) as tmp:
            save_model(self, tmp)  # tensors that share memory are stored once
        atomic_write_bytes(os.path.join(path, CONFIG_FILE),
                           json.dumps(self.config, indent=2).encode())  # key order kept: it is the
        # order of a multimodal model's modalities, which fixes the order of its random draws

    def _fill_model_name(self) -> None:
        """Put the registered name of this model's class under ``config["model"]`` if it is missing."""
        config = getattr(self, "config", None)
        if not isinstance(config, dict):
            raise TypeError(f"{type(self).__name__} cannot be saved: it has no config dict (set self.config "
                            "to its JSON-serializable constructor options, or build it with "
                            "mmgen.models.from_config)")
        if "model" in config:
            return
        from mmgen import plugins
        from mmgen.models import short_name
        names = [c.name for c in plugins.list_components("model") if c.obj is type(self)]
        if len(names) != 1:
            found = f"it is registered as {', '.join(names)}" if names else "it is not a registered model"
            raise ValueError(f"{type(self).__name__} cannot be saved: its config has no 'model' name and "
                             f"{found}; set self.config['model'] to its registered name")
        config["model"] = short_name(names[0])

    @classmethod
    def from_pretrained(cls, path: str, map_location: str | torch.device = "cpu", **modules):
        """Rebuild from ``config.json`` and load ``model.safetensors``. Components that were given as
        modules (not specs) when the model was made must be passed again as keyword arguments."""
        from mmgen.models import from_config
        config = read_config(path)
        model = from_config(config, **modules)
        if cls is not GenerativeModel and not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        load_weights(model, os.path.join(path, WEIGHTS_FILE), map_location)
        return model


def read_config(path: str) -> dict:
    file = os.path.join(path, CONFIG_FILE)
    if not os.path.exists(file):
        raise FileNotFoundError(f"no {CONFIG_FILE} in {path!r}: not a saved mmgen model folder")
    try:
        with open(file) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file} is not valid JSON (corrupted or truncated?): {exc}") from exc


def load_weights(model: nn.Module, file: str, map_location="cpu") -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_model
    if not os.path.exists(file):
        raise FileNotFoundError(f"missing weights file {file}")
    try:
        missing, unexpected = load_model(model, file, strict=False, device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{file} cannot be read (corrupted or truncated?): {exc}") from exc
    # a file written before save_model holds each name of a tied tensor: load_model loads them all
    # but lists the extra names as unexpected
    unexpected = [k for k in unexpected if k not in model.state_dict()]
    if missing or unexpected:
        raise ValueError(f"{file} does not match the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
