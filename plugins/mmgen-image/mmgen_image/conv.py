"""Conv encoder and decoder for square images of any size >= 4 pixels and any number of channels
(the spatial plan is :func:`mmgen_image.sizes.side_plan`)."""
import torch
from torch import nn

from mmgen_image.sizes import check_image, output_paddings, side_plan, widths


def check_input(x: torch.Tensor, channels: int, size: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1:] != (channels, size, size):
        raise ValueError(f"{who} expects images shaped [B, {channels}, {size}, {size}], "
                         f"got {tuple(x.shape)}")


class ConvEncoder(nn.Module):
    """[B, C, H, W] -> [B, out_features] with stride-2 convolutions and a linear head."""

    def __init__(self, in_channels: int = 1, size: int = 28, out_features: int = 128, hidden: int = 32):
        super().__init__()
        check_image(in_channels, size)
        self.in_channels, self.size, self.out_features = in_channels, size, out_features
        sides = side_plan(size)
        chans = widths(hidden, len(sides))
        layers = [nn.Conv2d(in_channels, chans[0], 3, padding=1), nn.ReLU()]
        for c_in, c_out in zip(chans, chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(chans[-1] * sides[-1] ** 2, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.size, "image.conv encoder")
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """[B, in_features] -> [B, out_channels * params_per_channel, size, size] logits or means.

    ``params_per_channel`` is the likelihood's ``params_per_value`` (1 for Bernoulli logits or
    Gaussian means, ``levels`` for categorical, 2 for a Gaussian with learned scale); the layout
    is channel-major, as ``mmgen.likelihoods`` reads it.
    """

    def __init__(self, in_features: int = 128, out_channels: int = 1, size: int = 28,
                 params_per_channel: int = 1, hidden: int = 32):
        super().__init__()
        check_image(out_channels, size)
        if params_per_channel < 1:
            raise ValueError(f"params_per_channel must be >= 1, got {params_per_channel!r}")
        self.in_features, self.out_channels, self.size = in_features, out_channels, size
        self.params_per_channel = params_per_channel
        sides = side_plan(size)
        chans = widths(hidden, len(sides))[::-1]
        self.start = (chans[0], sides[-1], sides[-1])
        self.project = nn.Sequential(nn.Linear(in_features, chans[0] * sides[-1] ** 2), nn.ReLU())
        layers = []
        for c_in, c_out, pad in zip(chans, chans[1:], output_paddings(sides)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, output_padding=pad), nn.ReLU()]
        layers.append(nn.Conv2d(chans[-1], out_channels * params_per_channel, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() != 2 or h.shape[1] != self.in_features:
            raise ValueError(f"image.conv decoder expects [B, {self.in_features}], got {tuple(h.shape)}")
        return self.body(self.project(h).view(-1, *self.start))
