"""A small U-Net noise predictor for diffusion models: ``forward(x_t, t, condition=None) -> eps``.

Residual blocks (GroupNorm, SiLU, 3x3 convs) whose features are scaled and shifted (FiLM) by an
embedding of the timestep (sinusoidal, then an MLP) plus, for a conditional model, a projection
of the condition vector; one self-attention block at the lowest resolution; one skip connection
per resolution. The side is halved ``len(channel_mult) - 1`` times, so it must be divisible by
``2 ** (len(channel_mult) - 1)`` (8 -> 4, 28 -> 14 -> 7, 32 -> 16 -> 8).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmgen_image.conv import check_input
from mmgen_image.sizes import check_image


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of timesteps [B] (periods from 2 pi to 10,000 x 2 pi)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, embed_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class SelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = _norm(channels)
        self.attention = nn.MultiheadAttention(channels, math.gcd(heads, channels), batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class UNetDenoiser(nn.Module):
    """Noisy images [B, C, S, S], timesteps [B] (and conditions [B, condition_features]) -> the
    predicted noise [B, C, S, S].

    Args:
        in_channels, size: of the images (from the data).
        hidden: width at full resolution; ``channel_mult``: width multipliers per resolution.
        blocks: residual blocks per resolution on the way down (one more on the way up).
        condition_features: size of the condition vector (0: unconditional).
        attention: a self-attention block at the lowest resolution.
        coordinates: give the first convolution two more input channels, each pixel's x and y in
            [-1, 1] (CoordConv, Liu et al. 2018): convolutions alone barely know where in the image
            they are, and a caption's position ("at the top left") reaches the network only through
            the global condition vector.
        condition_map: also add a linear map of the condition vector to a [C, s, s] feature map at
            the lowest resolution (side s = size / 2 ** (len(channel_mult) - 1)), before the middle
            blocks, as a GAN's generator maps its input to an image-shaped tensor: FiLM scales and
            shifts every pixel alike, so "at the top left" can reach a place in the image only
            through this map (or ``coordinates``). Zero at initialization. Needs ``condition_features`` > 0.
    """

    def __init__(self, in_channels: int = 1, size: int = 28, hidden: int = 32,
                 channel_mult: list[int] | tuple[int, ...] = (1, 2, 2), blocks: int = 1,
                 condition_features: int = 0, attention: bool = True, coordinates: bool = False,
                 condition_map: bool = False):
        super().__init__()
        check_image(in_channels, size)
        mult = list(channel_mult)
        if not mult or not all(isinstance(m, int) and m >= 1 for m in mult):
            raise ValueError(f"image.unet channel_mult must be a non-empty list of positive ints, got {channel_mult!r}")
        if size % 2 ** (len(mult) - 1):
            raise ValueError(f"image.unet halves the side {len(mult) - 1} times (channel_mult {mult}), so size "
                             f"must be divisible by {2 ** (len(mult) - 1)}; got {size} (use fewer resolutions)")
        if not isinstance(hidden, int) or hidden < 1 or not isinstance(blocks, int) or blocks < 1:
            raise ValueError(f"image.unet needs hidden >= 1 and blocks >= 1, got {hidden!r} and {blocks!r}")
        if not isinstance(condition_features, int) or condition_features < 0:
            raise ValueError(f"image.unet condition_features must be an int >= 0, got {condition_features!r}")
        if condition_map and not condition_features:
            raise ValueError("image.unet condition_map maps the condition to a feature map: it needs "
                             f"condition_features > 0 (a conditional model), got {condition_features!r}")
        self.in_channels, self.size, self.condition_features = in_channels, size, condition_features
        embed = 4 * hidden
        self.time_features = hidden
        self.time_mlp = nn.Sequential(nn.Linear(hidden, embed), nn.SiLU(), nn.Linear(embed, embed))
        self.condition_proj = nn.Linear(condition_features, embed) if condition_features else None
        widths = [hidden * m for m in mult]
        self.coordinates = bool(coordinates)
        self.conv_in = nn.Conv2d(in_channels + 2 * self.coordinates, hidden, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = hidden
        for i, w in enumerate(widths):
            self.down.append(nn.ModuleList([ResBlock(c if b == 0 else w, w, embed) for b in range(blocks)]))
            c = w
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.low_side = size // 2 ** (len(mult) - 1)
        self.condition_map = nn.Linear(condition_features, c * self.low_side ** 2) if condition_map else None
        if self.condition_map is not None:  # zero at initialization: training starts from the FiLM-only network
            nn.init.zeros_(self.condition_map.weight)
            nn.init.zeros_(self.condition_map.bias)
        self.mid = nn.ModuleList([ResBlock(c, c, embed), ResBlock(c, c, embed)])
        self.mid_attention = SelfAttention(c) if attention else nn.Identity()
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(nn.ModuleList([ResBlock((c + w) if b == 0 else w, w, embed) for b in range(blocks + 1)]))
            c = w
            if i > 0:
                self.upsample.append(nn.Conv2d(w, widths[i - 1], 3, padding=1))
                c = widths[i - 1]
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        check_input(x, self.in_channels, self.size, "image.unet")
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(len(x))
        if t.shape != (len(x),):
            raise ValueError(f"image.unet takes one timestep per image ([{len(x)}]), got shape {tuple(t.shape)}")
        emb = self.time_mlp(timestep_embedding(t, self.time_features).to(x.dtype))
        if self.condition_proj is not None:
            if condition is None or condition.shape != (len(x), self.condition_features):
                got = None if condition is None else tuple(condition.shape)
                raise ValueError(f"image.unet was built with condition_features={self.condition_features}: pass "
                                 f"condition [{len(x)}, {self.condition_features}], got {got}")
            condition = condition.to(x.dtype)
            emb = emb + self.condition_proj(condition)
        elif condition is not None:
            raise ValueError("image.unet was built unconditional (condition_features=0) but got a condition")
        if self.coordinates:
            ramp = torch.linspace(-1, 1, self.size, device=x.device, dtype=x.dtype)
            grid = torch.stack(torch.meshgrid(ramp, ramp, indexing="ij")).expand(len(x), -1, -1, -1)
            x = torch.cat([x, grid], dim=1)
        h = self.conv_in(x)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        if self.condition_map is not None:
            h = h + self.condition_map(condition).view(len(x), -1, self.low_side, self.low_side)
        h = self.mid[0](h, emb)
        h = self.mid[1](self.mid_attention(h), emb)
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
