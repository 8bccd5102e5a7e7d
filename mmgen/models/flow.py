"""A coupling-flow density model over integer-level images (NICE, Dinh et al. 2015; RealNVP, Dinh
et al. 2017), trained on uniformly dequantized data."""
from __future__ import annotations

import math

import torch

from mmgen.models.base import GenerativeModel
from mmgen.models.vae import standard_log_density
from mmgen.nn import flows


class CouplingFlow(GenerativeModel):
    """Images of integer levels ``x`` in ``[0, levels)`` as a flow of a standard Gaussian.

    Dequantization: v = x + u, u ~ U[0, 1)^D, has a density on [0, levels)^D. It is mapped to
    y = logit(alpha + (1 - 2 alpha) v / levels) and through ``layers`` affine couplings to
    z ~ N(0, I), so log p(v) = log N(z) + sum log|det| + log|dy/dv|. The discrete data's
    probability is P(x) = integral of p(x + u) du over the unit cube, so log P(x) >= E_u log p(x + u)
    (and, with ``k`` draws of u, >= E log (1/k) sum_i p(x + u_i), a tighter bound): ``nll`` is an
    upper bound on the discrete -log P(x), in nats, comparable with a PixelCNN's exact NLL.

    Args:
        channels, image_size, levels: from the data (mmgen.infer).
        layers, hidden: couplings and the width of their networks.
        mask: "alternating" (images flattened, MLP couplings), "checkerboard" or "channel" (3x3
            convolutional couplings; "channel" needs >= 2 channels).
        alpha: keeps the logit away from 0 and 1.
        k: dequantization draws of ``nll`` (the bound tightens with k).
    """

    data_fields = {"channels": "x.channels", "image_size": "x.size", "levels": "levels"}  # see mmgen.infer

    def __init__(self, *, channels: int = 1, image_size: int = 8, levels: int = 17, layers: int = 8,
                 hidden: int = 128, mask: str = "alternating", alpha: float = 0.05, k: int = 16):
        super().__init__()
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"CouplingFlow: levels must be an int >= 2 (integer-level data), got {levels!r}")
        if not 0 < alpha < 0.5:
            raise ValueError(f"CouplingFlow: alpha must lie in (0, 0.5), got {alpha!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"CouplingFlow: k must be an int >= 1, got {k!r}")
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"CouplingFlow: layers must be an int >= 1, got {layers!r}")
        self.shape = (channels, image_size, image_size)
        self.flow_shape = (math.prod(self.shape),) if mask == "alternating" else self.shape  # what the couplings see
        self.flow = flows.coupling_flows(self.flow_shape, layers, hidden, mask)
        self.levels, self.alpha, self.k, self.mask = levels, float(alpha), k, mask
        self.config = {"model": "flow", "channels": channels, "image_size": image_size, "levels": levels,
                       "layers": layers, "hidden": hidden, "mask": mask, "alpha": self.alpha, "k": k}

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"CouplingFlow: x must be [B, {', '.join(map(str, self.shape))}], got {got}")

    def log_density(self, v: torch.Tensor) -> torch.Tensor:
        """log p(v) per example for dequantized data v in [0, levels)^D, in nats."""
        s = self.alpha + (1 - 2 * self.alpha) * v / self.levels
        y = torch.log(s) - torch.log1p(-s)
        log_dy_dv = math.log((1 - 2 * self.alpha) / self.levels) - torch.log(s) - torch.log1p(-s)
        z, log_det = self.flow(y.reshape(len(y), *self.flow_shape))
        return standard_log_density(z.reshape(len(z), -1)) + log_det + log_dy_dv.reshape(len(v), -1).sum(1)

    def _dequantized(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        self._check(x)
        return x.float() + torch.rand(x.shape, generator=generator, device=x.device)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """-E_u log p(x + u), averaged over the batch (nats per example)."""
        return -self.log_density(self._dequantized(x)).mean()

    def log_prob(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """log (1/k) sum_i p(x + u_i) per example: a lower bound on the discrete log P(x), in nats."""
        k = self.k if k is None else k
        draws = torch.stack([self.log_density(self._dequantized(x)) for _ in range(k)])
        return torch.logsumexp(draws, 0) - math.log(k)

    @torch.no_grad()
    def nll(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """An upper bound on -log P(x) per example, in nats (``k`` dequantization draws)."""
        return -self.log_prob(x, k)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``[n, C, H, W]`` of int64 levels: z ~ N(0, I) through the inverse flow, the
        logit undone and the result floored."""
        device = self.flow[0].mask.device
        z = torch.randn(n, *self.flow_shape, generator=generator, device=device)
        y = self.flow.inverse(z)[0].reshape(n, *self.shape)
        v = (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha) * self.levels
        return v.floor().clamp(0, self.levels - 1).long()
