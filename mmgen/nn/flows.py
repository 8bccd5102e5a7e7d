"""Normalizing flows: planar flows (Rezende & Mohamed 2015) and affine couplings (NICE, Dinh et al.
2015; RealNVP, Dinh et al. 2017).

Every layer maps ``forward(z, context=None) -> (z', log_det)`` with ``log_det[B]`` = log|det dz'/dz|
per example; couplings also have ``inverse(z', context=None) -> (z, log_det of the inverse)``. A
``context`` tensor ``[B, F]`` (the encoder's features of x, for a flow posterior) makes the flow
amortized: the planar parameters, or the coupling networks' input, depend on it.

Masks pick the half of the values a coupling keeps (1) and the half it transforms (0):
:func:`checkerboard_mask` for images ``[C, H, W]``, :func:`channel_mask` (first half of the channels)
and :func:`alternating_mask` for vectors (even / odd positions); a stack flips the mask from one
layer to the next so that every value is transformed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PlanarFlow", "AffineCoupling", "FlowSequence", "CouplingMLP", "CouplingConvNet",
           "checkerboard_mask", "channel_mask", "alternating_mask", "planar_flows", "coupling_flows",
           "build", "MASKS", "TYPES"]

MASKS = ("alternating", "checkerboard", "channel")
TYPES = ("planar", "coupling")


def checkerboard_mask(height: int, width: int, parity: int = 0) -> torch.Tensor:
    """``[1, H, W]``: 1 where (row + column + parity) is even."""
    rows = torch.arange(height).unsqueeze(1)
    cols = torch.arange(width).unsqueeze(0)
    return ((rows + cols + parity) % 2 == 0).float().unsqueeze(0)


def channel_mask(channels: int, parity: int = 0) -> torch.Tensor:
    """``[C, 1, 1]``: 1 on the first half of the channels (parity 1: the second half)."""
    if channels < 2:
        raise ValueError(f"a channel mask needs >= 2 channels, got {channels}; use the checkerboard mask")
    first = (torch.arange(channels) < channels // 2).float()
    return (first if parity % 2 == 0 else 1 - first).view(channels, 1, 1)


def alternating_mask(dim: int, parity: int = 0) -> torch.Tensor:
    """``[D]``: 1 at the even positions (parity 1: the odd ones)."""
    if dim < 2:
        raise ValueError(f"a coupling needs >= 2 values to split, got dim={dim}")
    return ((torch.arange(dim) + parity) % 2 == 0).float()


class PlanarFlow(nn.Module):
    """f(z) = z + u' tanh(w.z + b), with u' = u + (softplus(w.u) - 1 - w.u) w / |w|^2 so that
    w.u' > -1 and f is invertible; log|det| = log(1 + u'.w tanh'(w.z + b)).

    The inverse exists but has no closed form, so there is no ``inverse``. With
    ``context_features > 0``, u, w and b are a linear function of the context (amortized, as in the
    paper's flow posteriors; the map starts at zero, so every context starts with the same flow);
    else they are parameters of their own."""

    def __init__(self, dim: int, context_features: int = 0):
        super().__init__()
        self.dim, self.context_features = dim, context_features
        if context_features:  # starts as the same small random flow for every context
            self.params = nn.Linear(context_features, 2 * dim + 1)
            nn.init.zeros_(self.params.weight)
            nn.init.normal_(self.params.bias, std=0.1)
        else:
            self.u = nn.Parameter(0.1 * torch.randn(dim))
            self.w = nn.Parameter(0.1 * torch.randn(dim))
            self.b = nn.Parameter(torch.zeros(1))

    def _params(self, z: torch.Tensor, context):
        if self.context_features:
            if context is None:
                raise ValueError("this PlanarFlow is amortized (context_features="
                                 f"{self.context_features}): pass context [B, {self.context_features}]")
            u, w, b = self.params(context).split([self.dim, self.dim, 1], dim=1)
            return u, w, b.squeeze(1)
        return self.u.expand_as(z), self.w.expand_as(z), self.b.expand(z.shape[0])

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None):
        u, w, b = self._params(z, context)
        wu = (w * u).sum(1, keepdim=True)
        u_hat = u + (F.softplus(wu) - 1 - wu) * w / (w.square().sum(1, keepdim=True) + 1e-8)
        h = torch.tanh((w * z).sum(1) + b)
        out = z + u_hat * h.unsqueeze(1)
        log_det = torch.log1p((1 - h.square()) * (w * u_hat).sum(1))
        return out, log_det


class CouplingMLP(nn.Module):
    """The network of a vector coupling: (kept values ``[B, D]`` [, context ``[B, F]``]) -> ``[B, 2D]``
    (log-scale and shift), its last layer zero so the coupling starts as the identity."""

    def __init__(self, dim: int, hidden: int, context_features: int = 0, layers: int = 2):
        super().__init__()
        sizes = [dim + context_features] + [hidden] * layers
        body = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            body += [nn.Linear(a, b), nn.ReLU()]
        last = nn.Linear(hidden, 2 * dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*body, last)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x if context is None else torch.cat([x, context], dim=1))


class CouplingConvNet(nn.Module):
    """The network of an image coupling: kept values ``[B, C, H, W]`` -> ``[B, 2C, H, W]``; 3x3
    convolutions, last layer zero. (No context: image flows here are density models.)"""

    def __init__(self, channels: int, hidden: int, layers: int = 2):
        super().__init__()
        body, width = [], channels
        for _ in range(layers):
            body += [nn.Conv2d(width, hidden, 3, padding=1), nn.ReLU()]
            width = hidden
        last = nn.Conv2d(hidden, 2 * channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*body, last)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is not None:
            raise ValueError("CouplingConvNet takes no context")
        return self.net(x)


class AffineCoupling(nn.Module):
    """y = m x + (1 - m) (x exp(s) + t), (s, t) = net(m x [, context]), with s = scale * tanh(raw)
    (a learned bound per value keeps early steps stable); log|det| = sum (1 - m) s. ``mask`` is
    shaped like one example (``[D]``, ``[C, H, W]`` or broadcastable to it); ``net`` returns the raw
    log-scale and the shift concatenated on dim 1. NICE's additive coupling is ``affine=False``."""

    def __init__(self, mask: torch.Tensor, net: nn.Module, affine: bool = True):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.net, self.affine = net, affine
        self.scale = nn.Parameter(torch.ones_like(self.mask)) if affine else None

    def _scale_shift(self, kept: torch.Tensor, context):
        raw_s, t = self.net(kept, context).chunk(2, dim=1)
        free = 1 - self.mask
        s = self.scale * torch.tanh(raw_s) * free if self.affine else torch.zeros_like(raw_s)
        return s, t * free

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None):
        kept = x * self.mask
        s, t = self._scale_shift(kept, context)
        y = kept + (1 - self.mask) * x * torch.exp(s) + t
        return y, s.reshape(len(x), -1).sum(1)

    def inverse(self, y: torch.Tensor, context: torch.Tensor | None = None):
        kept = y * self.mask
        s, t = self._scale_shift(kept, context)
        x = kept + (1 - self.mask) * (y - t) * torch.exp(-s)
        return x, -s.reshape(len(y), -1).sum(1)


class FlowSequence(nn.ModuleList):
    """Layers applied in order; ``forward`` and ``inverse`` sum their log-determinants."""

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None):
        log_det = z.new_zeros(z.shape[0])
        for layer in self:
            z, ld = layer(z, context)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None):
        closed = [type(layer).__name__ for layer in self if not hasattr(layer, "inverse")]
        if closed:
            raise ValueError(f"this flow has no closed-form inverse: {', '.join(sorted(set(closed)))} "
                             "layers cannot be inverted (use coupling layers)")
        log_det = z.new_zeros(z.shape[0])
        for layer in reversed(self):
            z, ld = layer.inverse(z, context)
            log_det = log_det + ld
        return z, log_det


def planar_flows(dim: int, layers: int, context_features: int = 0) -> FlowSequence:
    return FlowSequence(PlanarFlow(dim, context_features) for _ in range(layers))


def coupling_flows(shape, layers: int, hidden: int, mask: str = "alternating", context_features: int = 0,
                   affine: bool = True) -> FlowSequence:
    """``layers`` affine couplings over examples of ``shape`` (``[D]`` with the alternating mask,
    ``[C, H, W]`` with the checkerboard or channel mask), the mask flipped at every layer."""
    shape = tuple(shape)
    if mask not in MASKS:
        raise ValueError(f"unknown coupling mask {mask!r}; accepted: {', '.join(MASKS)}")
    if (mask == "alternating") != (len(shape) == 1) or len(shape) not in (1, 3):
        wanted = "[D] (vectors)" if mask == "alternating" else "[C, H, W] (images)"
        raise ValueError(f"the {mask} mask is for examples shaped {wanted}, got shape {list(shape)}")
    if len(shape) == 3 and context_features:
        raise ValueError("image couplings take no context")
    flows = []
    for i in range(layers):
        if mask == "alternating":
            m, net = alternating_mask(shape[0], i % 2), CouplingMLP(shape[0], hidden, context_features)
        else:
            m = checkerboard_mask(*shape[1:], i % 2) if mask == "checkerboard" else channel_mask(shape[0], i % 2)
            net = CouplingConvNet(shape[0], hidden)
        flows.append(AffineCoupling(m, net, affine=affine))
    return FlowSequence(flows)


_OPTIONS = {"planar": ("type", "layers"), "coupling": ("type", "layers", "hidden", "affine")}


def build(spec: dict, dim: int, context_features: int = 0, what: str = "flow") -> FlowSequence:
    """A flow over vectors of size ``dim`` from a config spec: ``{"type": "planar", "layers": K}`` or
    ``{"type": "coupling", "layers": K, "hidden": H, "affine": true}`` (alternating masks)."""
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise ValueError(f"{what} must be a dict with 'type' one of {', '.join(TYPES)} (e.g. "
                         f"{{'type': 'planar', 'layers': 8}}), got {spec!r}")
    unknown = sorted(set(spec) - set(_OPTIONS[spec["type"]]))
    if unknown:
        raise ValueError(f"{what}: a {spec['type']} flow has no option(s) {unknown}; accepted: "
                         f"{list(_OPTIONS[spec['type']])}")
    layers = spec.get("layers", 4)
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
        raise ValueError(f"{what}: layers must be an int >= 1, got {layers!r}")
    if spec["type"] == "planar":
        return planar_flows(dim, layers, context_features)
    hidden = spec.get("hidden", 64)
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise ValueError(f"{what}: hidden must be an int >= 1, got {hidden!r}")
    return coupling_flows([dim], layers, hidden, "alternating", context_features, bool(spec.get("affine", True)))
