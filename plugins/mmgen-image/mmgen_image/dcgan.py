"""DCGAN generator and discriminator (Radford et al.) for 8, 28, 32 and 64 pixel images."""
import torch
from torch import nn

from mmgen_image.conv import check_input
from mmgen_image.sizes import check_image, side_plan, widths


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) conv weights and N(1, 0.02) batch-norm scales, as in the DCGAN paper."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """[B, latent_dim] -> [B, out_channels, size, size] in [-1, 1] (tanh)."""

    def __init__(self, latent_dim: int = 100, out_channels: int = 1, size: int = 28, hidden: int = 64):
        super().__init__()
        check_image(out_channels, size)
        self.latent_dim, self.out_channels, self.size = latent_dim, out_channels, size
        sides = side_plan(size)
        chans = widths(hidden, len(sides), cap=8 * hidden)[::-1]
        self.start = (chans[0], sides[-1], sides[-1])
        self.project = nn.Linear(latent_dim, chans[0] * sides[-1] ** 2, bias=False)
        layers = [nn.BatchNorm2d(chans[0]), nn.ReLU()]
        for c_in, c_out in zip(chans, chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.Conv2d(chans[-1], out_channels, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"image.dcgan generator expects [B, {self.latent_dim}], got {tuple(z.shape)}")
        return self.body(self.project(z).view(-1, *self.start))


class DCGANDiscriminator(nn.Module):
    """[B, in_channels, size, size] -> [B] real/fake logits.

    ``batch_norm=False`` drops batch norm, which WGAN-GP's per-sample gradient penalty needs.
    """

    def __init__(self, in_channels: int = 1, size: int = 28, hidden: int = 64, batch_norm: bool = True):
        super().__init__()
        check_image(in_channels, size)
        self.in_channels, self.size = in_channels, size
        sides = side_plan(size)
        chans = widths(hidden, len(sides), cap=8 * hidden)
        layers = [nn.Conv2d(in_channels, chans[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(chans, chans[1:]):
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(chans[-1] * sides[-1] ** 2, 1)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.size, "image.dcgan discriminator")
        return self.head(self.features(x)).squeeze(1)
