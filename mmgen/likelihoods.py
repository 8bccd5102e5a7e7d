"""Named likelihoods p(x | decoder output).

A decoder emits ``params_per_value`` numbers for every data value, laid out channel-major:
``output[B, C * P, *rest]`` is read as ``[B, C, P, *rest]`` for data ``x[B, C, *rest]``.
With ``P == 1`` the output is shaped exactly like the data. ``log_prob(output, x)`` returns
log p(x) per sample, in nats, summed over all but dim 0.
"""
from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F

from mmgen.kernels.checks import all_true

__all__ = ["Bernoulli", "Categorical", "Gaussian", "get", "NAMES"]


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


def _split(output: torch.Tensor, params: int) -> torch.Tensor:
    """[B, C*P, *rest] -> [B, C, P, *rest]."""
    if output.dim() < 2 or output.shape[1] % params:
        raise ValueError(f"decoder output of shape {tuple(output.shape)} cannot hold {params} "
                         "parameters per channel (dim 1 must be a multiple of it)")
    return output.reshape(output.shape[0], output.shape[1] // params, params, *output.shape[2:])


def _check_same_shape(mean: torch.Tensor, x: torch.Tensor, what: str) -> None:
    if mean.shape != x.shape:
        raise ValueError(f"{what} of shape {tuple(mean.shape)} does not match data of shape {tuple(x.shape)}")


class Bernoulli:
    """Binary data in {0, 1} (or probabilities in [0, 1]); the output holds logits."""

    name = "bernoulli"
    params_per_value = 1

    def log_prob(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _check_same_shape(output, x, "bernoulli logits")
        return -_per_sample(F.binary_cross_entropy_with_logits(output, x.to(output.dtype), reduction="none"))

    def sample(self, output: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(output), generator=generator)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)


_FRACTIONAL = "categorical data must hold integer levels, got fractional values"


class Categorical:
    """Integer levels in [0, levels); the output holds ``levels`` logits per value."""

    name = "categorical"

    def __init__(self, levels: int = 256):
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"categorical likelihood needs levels >= 2, got {levels!r}")
        self.levels = levels
        self.params_per_value = levels

    def log_prob(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits = _split(output, self.levels)
        if logits.shape[:2] + logits.shape[3:] != x.shape:
            raise ValueError(f"categorical logits of shape {tuple(output.shape)} (levels={self.levels}) "
                             f"do not match data of shape {tuple(x.shape)}")
        if x.is_floating_point() and not all_true(x == x.round(), _FRACTIONAL):
            raise ValueError(_FRACTIONAL)
        index = x.long()
        in_range = (index >= 0) & (index < self.levels)
        if not all_true(in_range, f"categorical data must lie in [0, {self.levels})"):
            raise ValueError(f"categorical data must lie in [0, {self.levels}), got values in "
                             f"[{index.min().item()}, {index.max().item()}]")
        log_p = torch.log_softmax(logits, dim=2).gather(2, index.unsqueeze(2)).squeeze(2)
        return _per_sample(log_p)

    def sample(self, output: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        probs = torch.softmax(_split(output, self.levels), dim=2).movedim(2, -1)
        flat = torch.multinomial(probs.reshape(-1, self.levels), 1, generator=generator)
        return flat.reshape(probs.shape[:-1])

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(_split(output, self.levels), dim=2).movedim(2, -1)
        return probs @ torch.arange(self.levels, dtype=probs.dtype, device=probs.device)


class Gaussian:
    """Real data. With a fixed ``scale`` the output holds the means; with ``scale=None`` it holds
    a mean and a log standard deviation per value (``params_per_value == 2``)."""

    name = "gaussian"

    def __init__(self, scale: float | None = 1.0):
        if scale is not None and not scale > 0:
            raise ValueError(f"gaussian likelihood needs scale > 0 or None (learned), got {scale!r}")
        self.scale = scale
        self.params_per_value = 1 if scale is not None else 2

    def _mean_log_scale(self, output: torch.Tensor):
        if self.scale is not None:
            return output, torch.full_like(output, math.log(self.scale))
        params = _split(output, 2)
        return params[:, :, 0], params[:, :, 1]

    def log_prob(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mean, log_scale = self._mean_log_scale(output)
        _check_same_shape(mean, x, "gaussian mean")
        z = (x - mean) * torch.exp(-log_scale)
        return _per_sample(-0.5 * z.square() - log_scale - 0.5 * math.log(2 * math.pi))

    def sample(self, output: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_scale = self._mean_log_scale(output)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(log_scale) * noise

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return self._mean_log_scale(output)[0]


_BY_NAME = {cls.name: cls for cls in (Bernoulli, Categorical, Gaussian)}
NAMES = tuple(_BY_NAME)


def get(name: str, **kwargs):
    """The likelihood called ``name`` ("bernoulli", "categorical", "gaussian"), built with kwargs
    (``levels`` for categorical, ``scale`` for gaussian)."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown likelihood {name!r}; accepted: {', '.join(NAMES)}")
    accepted = [p for p in inspect.signature(_BY_NAME[name]).parameters]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"likelihood {name!r} has no option(s) {unknown}; accepted: {accepted or 'none'}")
    return _BY_NAME[name](**kwargs)
