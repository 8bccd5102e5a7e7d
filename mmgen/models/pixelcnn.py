"""Gated PixelCNN over discrete pixels, with exact cached (incremental) sampling."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmgen import likelihoods
from mmgen.kernels.checks import all_true
from mmgen.models.base import GenerativeModel
from mmgen.nn.labels import class_labels
from mmgen.nn.masked_conv import MaskedConv2d
from mmgen.nn.pixelcnn_blocks import GatedPixelCNNBlock

__all__ = ["PixelCNN"]


def _size(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
        raise ValueError(f"PixelCNN: image_size must be an int or [height, width] of ints >= 1, got {image_size!r}")
    return size


class PixelCNN(GenerativeModel):
    """Gated PixelCNN (van den Oord et al., 2016) with a categorical distribution per sub-pixel.

    p(x) = prod over pixels in raster order, and over channels R, G, B within a pixel, of
    Categorical(x_c[i, j] | everything before). Data are integer levels in ``[0, levels)``, shaped
    ``[B, channels, H, W]``.

    Args:
        channels: 1 (grey) or 3 (RGB, with the R|G|B channel masks).
        levels: values per sub-pixel, 2 (binary) .. 256.
        image_size: size that ``sample`` draws (the network itself is fully convolutional).
        hidden: feature maps per stack (a multiple of ``channels``).
        layers: gated blocks (the first has mask "A").
        kernel_size / first_kernel_size: odd kernel sizes of the later blocks / the first block.
        head_channels: width of the 1x1 output head (default ``hidden``).
        num_classes / cond_dim: condition on a class label ``[B]`` or a vector ``[B, cond_dim]``.
    """

    data_fields = {"channels": "x.channels", "image_size": "x.size", "levels": "levels"}  # see mmgen.infer

    def __init__(self, *, channels: int = 1, levels: int = 256, image_size: int | list[int] = 28,
                 hidden: int = 64, layers: int = 8, kernel_size: int = 3, first_kernel_size: int = 7,
                 head_channels: int | None = None, num_classes: int | None = None,
                 cond_dim: int | None = None):
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"PixelCNN: channels must be 1 or 3, got {channels!r}")
        if not isinstance(levels, int) or not 2 <= levels <= 256:
            raise ValueError(f"PixelCNN: levels must be an int in [2, 256], got {levels!r}")
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"PixelCNN: layers must be an int >= 1, got {layers!r}")
        head_channels = hidden if head_channels is None else head_channels
        for name, width in (("hidden", hidden), ("head_channels", head_channels)):
            if not isinstance(width, int) or width < 1 or width % channels:
                raise ValueError(f"PixelCNN: {name} must be a positive multiple of channels={channels}, got {width!r}")
        if num_classes is not None and cond_dim is not None:
            raise ValueError("PixelCNN: give at most one of num_classes and cond_dim")
        height, width = _size(image_size)
        self.config = {"model": "pixelcnn", "channels": channels, "levels": levels,
                       "image_size": image_size if isinstance(image_size, int) else [height, width],
                       "hidden": hidden, "layers": layers, "kernel_size": kernel_size,
                       "first_kernel_size": first_kernel_size, "head_channels": head_channels,
                       "num_classes": num_classes, "cond_dim": cond_dim}
        # from_config reads a null as "a module to pass again": leave the unset options out.
        self.config = {k: v for k, v in self.config.items() if v is not None}
        self.channels, self.levels, self.image_size = channels, levels, (height, width)
        self.num_classes, self.cond_dim = num_classes, cond_dim
        cond = {"num_classes": num_classes, "cond_dim": cond_dim, "color_groups": channels}
        self.blocks = nn.ModuleList(
            [GatedPixelCNNBlock(channels, hidden, first_kernel_size, mask_type="A", **cond)]
            + [GatedPixelCNNBlock(hidden, hidden, kernel_size, mask_type="B", **cond)
               for _ in range(layers - 1)])
        self.head = MaskedConv2d(hidden, head_channels, 1, mask_type="B", color_groups=channels)
        self.head_out = MaskedConv2d(head_channels, channels * levels, 1, mask_type="B",
                                     color_groups=channels)
        self.likelihood = likelihoods.Categorical(levels)

    # ------------------------------------------------------------------------------------------
    def _check_data(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"PixelCNN: x must be [B, {self.channels}, H, W], got {shape}")
        if x.is_complex() or (x.is_floating_point() and not all_true(x == x.round(), "PixelCNN: x must hold "
                                                                       "integer levels, got fractional values")):
            raise TypeError(f"PixelCNN: x must hold integer levels in [0, {self.levels}) (an integer "
                            f"or bool tensor, or floats with integral values), got {x.dtype} values "
                            "with a fractional part")

    def _check_cond(self, cond, batch: int):
        if self.num_classes is None and self.cond_dim is None:
            if cond is not None:
                raise ValueError("PixelCNN: this model is unconditional (num_classes and cond_dim are "
                                 "None) but cond was given")
            return None
        if cond is None:
            what = f"class labels [B] in [0, {self.num_classes})" if self.num_classes else f"[B, {self.cond_dim}]"
            raise ValueError(f"PixelCNN: this model is conditional: pass cond ({what})")
        if self.num_classes is not None:
            return class_labels(cond, batch, self.num_classes, "PixelCNN", name="cond", device=self._device())
        cond = torch.as_tensor(cond, device=self._device())
        if cond.shape != (batch, self.cond_dim):
            raise ValueError(f"PixelCNN: cond must have shape ({batch}, {self.cond_dim}), got {tuple(cond.shape)}")
        return cond.to(self._dtype())

    def _device(self) -> torch.device:
        return self.head_out.weight.device

    def _dtype(self) -> torch.dtype:
        return self.head_out.weight.dtype

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        """Levels to network inputs in [-1, 1]."""
        return x.to(self._dtype()) * (2.0 / (self.levels - 1)) - 1.0

    # ------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, channels * levels, H, W]``, channel-major (channel c holds levels
        ``c * levels .. (c + 1) * levels - 1``), as ``mmgen.likelihoods.Categorical`` reads them."""
        self._check_data(x)
        cond = self._check_cond(cond, x.shape[0])
        v = h = self._scale(x)
        for block in self.blocks:
            v, h = block(v, h, cond)
        return self.head_out(F.relu(self.head(F.relu(h))))

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) per image, in nats, shape ``[B]``."""
        return self.likelihood.log_prob(self(x, cond), x)

    def nll(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(x) per image, in nats, shape ``[B]``."""
        return -self.log_prob(x, cond)

    def bits_per_dim(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """-log2 p(x) divided by the number of sub-pixels, per image, shape ``[B]``."""
        return self.nll(x, cond) / (math.log(2.0) * x[0].numel())

    def loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood per image, in nats."""
        return self.nll(x, cond).mean()

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, cond=None,
               cached: bool = True) -> torch.Tensor:
        """Draw ``n`` images ``[n, channels, H, W]`` (int64 levels) of size ``image_size``.

        Every sub-pixel takes the level whose CDF interval holds one uniform draw; all uniforms are
        drawn up front from ``generator`` (or the default generator of its device), so the cached
        and the naive path give the same images for the same seed. ``cached=True`` computes each
        row of the vertical stack once and, per sub-pixel, only that pixel of the horizontal stack
        and head, reusing the activations of earlier pixels; ``cached=False`` runs the whole
        network once per sub-pixel (the reference).
        """
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"PixelCNN.sample: n must be an int >= 0, got {n!r}")
        cond = self._check_cond(cond, n)
        height, width = self.image_size
        device = self._device()
        gen_device = generator.device if generator is not None else device
        uniform = torch.rand((n, self.channels, height, width), generator=generator,
                             dtype=torch.float64, device=gen_device).to(device)
        if cached:
            return self._sample_cached(uniform, cond)
        x = torch.zeros((n, self.channels, height, width), dtype=torch.long, device=device)
        for i in range(height):
            for j in range(width):
                for c in range(self.channels):
                    logits = self(x, cond)[:, c * self.levels:(c + 1) * self.levels, i, j]
                    x[:, c, i, j] = self._pick(logits, uniform[:, c, i, j])
        return x

    def _pick(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The level whose CDF interval holds u, from logits ``[n, levels]``."""
        cdf = torch.softmax(logits.to(torch.float64), dim=1).cumsum(1)
        return (cdf < u[:, None]).sum(1).clamp_(max=self.levels - 1)

    def _sample_cached(self, uniform: torch.Tensor, cond) -> torch.Tensor:
        n, channels, height, width = uniform.shape
        device, dtype = uniform.device, self._dtype()
        blocks = list(self.blocks)
        weights = [block.step_weights() for block in blocks]
        biases = [block.condition(cond) for block in blocks]
        head_w, head_out_w = self.head.tap_weight(), self.head_out.tap_weight()
        levels = self.levels
        pad = max(block.pad for block in blocks)
        x = torch.zeros((n, channels, height, width), dtype=torch.long, device=device)

        def zeros(*shape):
            return torch.zeros(shape, dtype=dtype, device=device)

        # h[l]: horizontal input of block l (h[0]: the scaled image), channels last and padded by
        # `pad` zero columns on the left, so a block's window is a plain view. v[l]: vertical input.
        h = [zeros(n, height, pad + width, channels)] + [zeros(n, height, pad + width, b.channels) for b in blocks]
        v = [self._scale(x)] + [zeros(n, b.channels, height, width) for b in blocks]
        h[0][:, :, pad:] = v[0].permute(0, 2, 3, 1)
        for i in range(height):
            row_terms = []
            for l, block in enumerate(blocks):
                if i == 0:
                    v_pre = zeros(n, 2 * block.channels, width)
                else:  # the vertical stack's row i - 1, now that the image's row i - 1 is known
                    p = block.pad
                    top = max(0, i - 1 - p)
                    window = F.pad(v[l][:, :, top:i], (p, p, p - (i - 1 - top), 0))
                    v_pre, v[l + 1][:, :, i - 1] = block.vertical_step(window, biases[l][0])
                row_terms.append(block.row_terms(weights[l], v_pre, biases[l][1]))
            for j in range(width):
                col = pad + j
                for c in range(channels):
                    for l, block in enumerate(blocks):
                        start = col - block.pad
                        window = h[l][:, i, start:start + block.horizontal_taps].reshape(n, -1)
                        h[l + 1][:, i, col] = block.horizontal_step(weights[l], window, h[l][:, i, col],
                                                                    row_terms[l][:, j])
                    hidden = F.relu(F.linear(F.relu(h[-1][:, i, col]), head_w, self.head.bias))
                    logits = F.linear(hidden, head_out_w[c * levels:(c + 1) * levels],
                                      self.head_out.bias[c * levels:(c + 1) * levels])
                    level = self._pick(logits, uniform[:, c, i, j])
                    x[:, c, i, j] = level
                    v[0][:, c, i, j] = h[0][:, i, col, c] = self._scale(level)
        return x
