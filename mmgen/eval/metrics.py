"""Registered metrics: ``registry.add("metric", "myplugin.name", fn)`` with
``fn(model, data, **options) -> dict[str, float]``.

A run config names them in its eval section, ``"metrics": ["toy.fid", ...]`` or with options
``"metrics": {"toy.fid": {"k": 10}}``; ``mmgen eval RUN --metric NAME [--metric-option NAME.KEY=VALUE]``
runs them on a trained run. Their numbers go into ``RUN/eval_<split>.json`` under
``"metrics": {name: {key: value}}``.
"""
from __future__ import annotations

import inspect
import time
from collections.abc import Mapping

import torch


def normalize(spec, where: str = "eval.metrics") -> dict[str, dict]:
    """``{name: options}`` from a list of names, a dict name -> options (null: none) or one name."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, (list, tuple)):
        if not all(isinstance(name, str) for name in spec):
            raise ValueError(f"{where}: a list of metric names, got {list(spec)!r}")
        return {name: {} for name in spec}
    if isinstance(spec, Mapping):
        out = {}
        for name, options in spec.items():
            if options is None:
                options = {}
            if not isinstance(options, Mapping):
                raise ValueError(f"{where}.{name}: the metric's options must be a JSON object, got {options!r}")
            out[str(name)] = dict(options)
        return out
    raise ValueError(f"{where}: a list of metric names or an object name -> options, got {spec!r}")


def resolve(name: str):
    """The function registered as metric ``name`` (unknown names list the registered ones)."""
    from mmgen import plugins
    if not isinstance(name, str) or "." not in name:
        names = [c.name for c in plugins.list_components("metric")]
        raise plugins.UnknownComponentError(
            f"unknown metric {name!r}{plugins._suggest(name, names)}: metric names are namespaced like "
            f"'myplugin.name' (registered metric names: {', '.join(names) or 'none'})")
    return plugins.get_component("metric", name).obj


def check(spec, where: str | None = "eval.metrics") -> dict[str, dict]:
    """Normalize ``spec`` and check that each metric is registered and takes its options; messages
    start with ``where`` (None: nothing)."""
    from mmgen.models.base import raise_with_context
    metrics = normalize(spec, where or "metrics")
    for name, options in metrics.items():
        try:
            fn = resolve(name)
        except LookupError as exc:
            if where is None:
                raise
            raise_with_context(exc, where)
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        try:
            signature.bind(None, None, **options)
        except TypeError as exc:
            raise ValueError(f"{where + ': ' if where else ''}metric {name!r} does not take options {options}: {exc}; it takes "
                             f"{signature}") from None
    return metrics


def run(model, data, spec) -> dict[str, dict[str, float]]:
    """Run each metric of ``spec`` on ``model`` (in eval mode, torch seeded with 0 before each) and
    ``data``; ``{name: {key: float}}``, with each metric's wall time under ``seconds``."""
    results = {}
    was_training = model.training
    try:
        for name, options in check(spec).items():
            fn = resolve(name)
            model.eval()
            torch.manual_seed(0)
            started = time.perf_counter()
            found = fn(model, data, **options)
            seconds = time.perf_counter() - started
            if not isinstance(found, Mapping):
                raise TypeError(f"metric {name!r} returned {type(found).__name__}, not a dict of numbers")
            values = {}
            for key, value in found.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    value = value.item()
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"metric {name!r} returned {key}={value!r}, not a number")
                values[str(key)] = value if isinstance(value, int) else float(value)
            results[name] = {**values, "seconds": seconds}
    finally:
        model.train(was_training)
    return results


__all__ = ["normalize", "resolve", "check", "run"]
