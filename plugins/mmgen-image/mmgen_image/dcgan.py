"""DCGAN generator and discriminator (Radford et al.) for square images of any size >= 4 pixels.

With ``num_classes`` both are class-conditional: the generator concatenates a learned class
embedding to z, the discriminator is a projection discriminator (Miyato & Koyama 2018):
``D(x, y) = head(h(x)) + <embed(y), h(x)>``.
"""
import torch
from torch import nn

from mmgen_image.conv import check_input
from mmgen_image.sizes import check_image, output_paddings, side_plan, widths


def init_dcgan_weights(module: nn.Module) -> None:
    """N(0, 0.02) conv weights and N(1, 0.02) batch-norm scales, as in the DCGAN paper."""
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def check_labels(y, num_classes: int | None, batch: int, who: str) -> None:
    if num_classes is None:
        if y is not None:
            raise ValueError(f"{who} was built without num_classes and takes no labels y")
        return
    if y is None or y.dim() != 1 or y.shape[0] != batch or y.dtype != torch.int64:
        got = None if y is None else f"{y.dtype} {tuple(y.shape)}"
        raise ValueError(f"{who} (num_classes={num_classes}) needs int64 labels y shaped [{batch}], got {got}")


class DCGANGenerator(nn.Module):
    """[B, latent_dim] (and labels [B] with ``num_classes``) -> [B, out_channels, size, size] in
    [-1, 1] (tanh)."""

    def __init__(self, latent_dim: int = 100, out_channels: int = 1, size: int = 28, hidden: int = 64,
                 num_classes: int | None = None):
        super().__init__()
        check_image(out_channels, size)
        if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim < 1:
            raise ValueError(f"image.dcgan generator needs latent_dim >= 1 (an int), got {latent_dim!r}")
        self.latent_dim, self.out_channels, self.size = latent_dim, out_channels, size
        self.num_classes = num_classes
        sides = side_plan(size)
        chans = widths(hidden, len(sides), cap=8 * hidden)[::-1]
        self.start = (chans[0], sides[-1], sides[-1])
        if num_classes is not None:
            self.embed = nn.Embedding(num_classes, latent_dim)
        inputs = latent_dim * (1 if num_classes is None else 2)
        self.project = nn.Linear(inputs, chans[0] * sides[-1] ** 2, bias=False)
        layers = [nn.BatchNorm2d(chans[0]), nn.ReLU()]
        for c_in, c_out, pad in zip(chans, chans[1:], output_paddings(sides)):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, output_padding=pad, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.Conv2d(chans[-1], out_channels, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"image.dcgan generator expects [B, {self.latent_dim}], got {tuple(z.shape)}")
        check_labels(y, self.num_classes, z.shape[0], "image.dcgan generator")
        if y is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.body(self.project(z).view(-1, *self.start))


class DCGANDiscriminator(nn.Module):
    """[B, in_channels, size, size] (and labels [B] with ``num_classes``) -> [B] real/fake logits.

    ``batch_norm=False`` drops batch norm, which WGAN-GP's per-sample gradient penalty needs.
    """

    def __init__(self, in_channels: int = 1, size: int = 28, hidden: int = 64, batch_norm: bool = True,
                 num_classes: int | None = None):
        super().__init__()
        check_image(in_channels, size)
        self.in_channels, self.size, self.num_classes = in_channels, size, num_classes
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
        if num_classes is not None:
            self.embed = nn.Embedding(num_classes, self.head.in_features)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_input(x, self.in_channels, self.size, "image.dcgan discriminator")
        check_labels(y, self.num_classes, x.shape[0], "image.dcgan discriminator")
        h = self.features(x)
        out = self.head(h).squeeze(1)
        return out if y is None else out + (self.embed(y) * h).sum(1)
