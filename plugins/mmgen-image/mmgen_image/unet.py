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
    """GroupNorm, SiLU, 3x3 conv, twice; between them the features are scaled and shifted by the
    embedding (FiLM) and, with ``spatial_channels``, also per pixel by a 1x1 conv of a spatial
    condition map resized to the block's side (SPADE, Park et al. 2019; zero at initialization)."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, spatial_channels: int = 0):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.spatial = nn.Conv2d(spatial_channels, 2 * c_out, 1) if spatial_channels else None
        if self.spatial is not None:
            nn.init.zeros_(self.spatial.weight)
            nn.init.zeros_(self.spatial.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor,
                spatial: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        if self.spatial is not None:  # spatial: the map at every side, {side: [B, k, side, side]}
            s_scale, s_shift = self.spatial(spatial[h.shape[-1]]).chunk(2, dim=1)
            scale, shift = scale + s_scale, shift + s_shift
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
        condition_map: give the caption a place in the image (FiLM scales and shifts every pixel
            alike, so "at the top left" can reach a place only through such a map or ``coordinates``):
            a linear map of the condition vector to a feature map at the lowest side
            s = size / 2 ** (len(channel_mult) - 1), as a GAN's generator maps its input to an
            image-shaped tensor. ``"mid"`` (or true): [C, s, s], added before the middle blocks (zero
            at initialization); ``"input"``: ``map_channels`` channels, resized to the image and
            given to the first convolution as extra input channels (zero at initialization);
            ``"spade"``: ``map_channels`` channels from which every residual block takes a per-pixel
            scale and shift (a 1x1 conv, zero at initialization). False: none. Needs
            ``condition_features`` > 0.
        map_channels: channels of the ``"input"`` and ``"spade"`` maps.
    """

    def __init__(self, in_channels: int = 1, size: int = 28, hidden: int = 32,
                 channel_mult: list[int] | tuple[int, ...] = (1, 2, 2), blocks: int = 1,
                 condition_features: int = 0, attention: bool = True, coordinates: bool = False,
                 condition_map: bool | str = False, map_channels: int = 8):
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
        if condition_map is True:
            condition_map = "mid"
        if condition_map not in (False, None, "mid", "input", "spade"):
            raise ValueError(f"image.unet condition_map must be false, \"mid\", \"input\" or \"spade\", "
                             f"got {condition_map!r}")
        if isinstance(map_channels, bool) or not isinstance(map_channels, int) or map_channels < 1:
            raise ValueError(f"image.unet map_channels must be an int >= 1, got {map_channels!r}")
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
        self.map_mode = condition_map or None
        self.low_side = size // 2 ** (len(mult) - 1)
        extra = 2 * self.coordinates + (map_channels if self.map_mode == "input" else 0)
        spade = map_channels if self.map_mode == "spade" else 0
        self.conv_in = nn.Conv2d(in_channels + extra, hidden, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = hidden
        for i, w in enumerate(widths):
            self.down.append(nn.ModuleList([ResBlock(c if b == 0 else w, w, embed, spade) for b in range(blocks)]))
            c = w
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.map_channels = c if self.map_mode == "mid" else map_channels
        self.condition_map = (nn.Linear(condition_features, self.map_channels * self.low_side ** 2)
                              if self.map_mode else None)
        if self.map_mode in ("mid", "input"):  # zero at initialization: training starts from the FiLM-only network
            nn.init.zeros_(self.condition_map.weight)  # ("spade" zeroes its per-block convs instead)
            nn.init.zeros_(self.condition_map.bias)
        self.mid = nn.ModuleList([ResBlock(c, c, embed, spade), ResBlock(c, c, embed, spade)])
        self.mid_attention = SelfAttention(c) if attention else nn.Identity()
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(nn.ModuleList([ResBlock((c + w) if b == 0 else w, w, embed, spade)
                                          for b in range(blocks + 1)]))
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
        spatial = None
        if self.condition_map is not None:
            spatial = self.condition_map(condition).view(len(x), self.map_channels, self.low_side, self.low_side)
        if self.map_mode == "input":
            x = torch.cat([x, F.interpolate(spatial, size=(self.size, self.size), mode="bilinear",
                                            align_corners=False)], dim=1)
        spatial_blocks = None
        if self.map_mode == "spade":  # resized once per side, not once per block
            sides = {self.size // 2 ** i for i in range(len(self.down))}
            spatial_blocks = {side: spatial if side == self.low_side else F.interpolate(
                spatial, size=(side, side), mode="bilinear", align_corners=False) for side in sides}
        if self.coordinates:
            ramp = torch.linspace(-1, 1, self.size, device=x.device, dtype=x.dtype)
            grid = torch.stack(torch.meshgrid(ramp, ramp, indexing="ij")).expand(len(x), -1, -1, -1)
            x = torch.cat([x, grid], dim=1)
        h = self.conv_in(x)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb, spatial_blocks)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        if self.map_mode == "mid":
            h = h + spatial
        h = self.mid[0](h, emb, spatial_blocks)
        h = self.mid[1](self.mid_attention(h), emb, spatial_blocks)
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb, spatial_blocks)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
