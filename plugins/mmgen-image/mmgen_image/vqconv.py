"""Conv encoder/decoder to and from a grid of D-dim vectors (the VQ-VAE's code grid).

The encoder halves the side ``downsample`` times (odd sides round down): [B, C, S, S] ->
[B, D, S // 2**downsample, ...]; the decoder mirrors it back to S. Any S >= 4 with a grid of at
least one cell. Both use the residual blocks of van den Oord et al. (2017).
"""
import torch
from torch import nn

from mmgen_image.conv import check_input
from mmgen_image.sizes import check_image, output_paddings


def vq_sides(size: int, downsample: int) -> list[int]:
    """Sides from ``size`` down to the code grid: ``downsample`` halvings, odd sides rounded down
    (the decoder adds the pixel back), e.g. 28, 2 -> [28, 14, 7]; 20, 2 -> [20, 10, 5]."""
    if not isinstance(downsample, int) or isinstance(downsample, bool) or downsample < 1 \
            or size // 2 ** downsample < 1:
        raise ValueError(f"image.vqconv: downsample must be an int >= 1 with size // 2**downsample >= 1; "
                         f"got downsample={downsample!r} for size {size}")
    sides = [size]
    for _ in range(downsample):
        sides.append(sides[-1] // 2)
    return sides


def grid_side(size: int, downsample: int) -> int:
    return vq_sides(size, downsample)[-1]


class Residual(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VQConvEncoder(nn.Module):
    """[B, C, size, size] -> [B, out_channels, grid_size, grid_size] (pre-quantization vectors)."""

    def __init__(self, in_channels: int = 1, size: int = 28, out_channels: int = 16, hidden: int = 64,
                 downsample: int = 2, res_blocks: int = 1):
        super().__init__()
        check_image(in_channels, size)
        self.grid_size = grid_side(size, downsample)
        self.in_channels, self.size, self.out_channels = in_channels, size, out_channels
        layers, width = [], in_channels
        for _ in range(downsample):
            layers += [nn.Conv2d(width, hidden, 4, stride=2, padding=1), nn.ReLU()]
            width = hidden
        layers += [nn.Conv2d(hidden, hidden, 3, padding=1)]
        layers += [Residual(hidden) for _ in range(res_blocks)]
        layers += [nn.ReLU(), nn.Conv2d(hidden, out_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.size, "image.vqconv encoder")
        return self.net(x)


class VQConvDecoder(nn.Module):
    """[B, in_channels, grid_size, grid_size] -> [B, out_channels * params_per_channel, size, size]
    logits or means, channel-major as ``mmgen.likelihoods`` reads them."""

    def __init__(self, in_channels: int = 16, out_channels: int = 1, size: int = 28,
                 params_per_channel: int = 1, hidden: int = 64, downsample: int = 2, res_blocks: int = 1):
        super().__init__()
        check_image(out_channels, size)
        if params_per_channel < 1:
            raise ValueError(f"params_per_channel must be >= 1, got {params_per_channel!r}")
        self.grid_size = grid_side(size, downsample)
        self.in_channels, self.out_channels, self.size = in_channels, out_channels, size
        self.params_per_channel = params_per_channel
        layers = [nn.Conv2d(in_channels, hidden, 3, padding=1)]
        layers += [Residual(hidden) for _ in range(res_blocks)]
        layers += [nn.ReLU()]
        for pad in output_paddings(vq_sides(size, downsample)):
            layers += [nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1, output_padding=pad), nn.ReLU()]
        layers += [nn.Conv2d(hidden, out_channels * params_per_channel, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        side = self.grid_size
        if h.dim() != 4 or h.shape[1:] != (self.in_channels, side, side):
            raise ValueError(f"image.vqconv decoder expects [B, {self.in_channels}, {side}, {side}], "
                             f"got {tuple(h.shape)}")
        return self.net(h)
