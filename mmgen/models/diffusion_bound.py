"""The variational bound's pieces for :class:`mmgen.models.Diffusion`: the Gaussian KL of the terms
L_{t-1}, Ho et al.'s discretized Gaussian decoder p(x_0 | x_1) and the strata of timesteps the
bound's estimate draws from."""
from __future__ import annotations

import torch


def normal_kl(mean1, var1, mean2, var2) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) elementwise."""
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def discretized_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float, half_width: float) -> torch.Tensor:
    """log P(x) elementwise for x on a grid of bins of ``half_width`` spanning [-1, 1]: the mass
    of N(mean, std^2) in x's bin, the end bins reaching to -inf and +inf (Ho et al. 2020, eq. 13)."""
    x, mean = x.double(), mean.double()
    upper = (x + half_width - mean) / std
    lower = (x - half_width - mean) / std
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_sf_lower = torch.special.log_ndtr(-lower)
    # mass of [lower, upper], from the side of the mean where it is not a difference of two ~1s
    below = log_cdf_upper + torch.log1p(-torch.exp(torch.special.log_ndtr(lower) - log_cdf_upper).clamp(max=1 - 1e-15))
    above = log_sf_lower + torch.log1p(-torch.exp(torch.special.log_ndtr(-upper) - log_sf_lower).clamp(max=1 - 1e-15))
    middle = torch.where(lower > 0, above, below)
    edge = 1.0 - 1e-6
    return torch.where(x < -edge, log_cdf_upper, torch.where(x > edge, log_sf_lower, middle))


def strata(timesteps: int, k: int) -> list[int]:
    """Edges ``[1 = e_0 < e_1 < ... < e_k = timesteps]`` of k strata of the indices 1..T-1 that grow
    geometrically: the terms L_{t-1} of the bound fall by orders of magnitude over the first steps
    (most of a trained model's bound is in the smallest t), so those get strata of one index each."""
    edges = [1]
    for j in range(k):
        e = edges[-1]
        step = e * (timesteps / e) ** (1 / (k - j))
        edges.append(min(max(e + 1, round(step)), timesteps - (k - j - 1)))
    return edges
