"""Text-conditioned image networks for text-to-image GANs (Reed et al. 2016; Zhang et al. 2017).

- :class:`TextMatchingDiscriminator`: a DCGAN discriminator that also scores whether an image
  matches a text embedding, as a projection: ``D(x, t) = head(h(x)) + <W t, h(x)>``.
- :class:`RefinerGenerator`: StackGAN's second stage, an image [B, C, s, s] and a condition vector
  -> an image [B, C, 2s, 2s] (encode to s/2, join with the condition, residual blocks, upsample).

The first-stage generator is ``image.dcgan``'s with the noise and the condition concatenated.
"""
import torch
import torch.nn.functional as F
from torch import nn

from mmgen_image.conv import check_input
from mmgen_image.dcgan import DCGANDiscriminator, init_dcgan_weights
from mmgen_image.sizes import check_image


def _check_embedding(t: torch.Tensor, features: int, batch: int, who: str) -> None:
    if t.dim() != 2 or t.shape != (batch, features):
        raise ValueError(f"{who} expects a text embedding shaped [{batch}, {features}], got {tuple(t.shape)}")


class TextMatchingDiscriminator(nn.Module):
    """[B, C, size, size] images and [B, text_features] embeddings -> [B] logits of "real and
    matching"; the image features are those of :class:`DCGANDiscriminator`.

    ``forward(x, t1, t2, ...)`` scores the same images against several embeddings (a tuple of [B]
    logits), computing the image features once. With ``similarity_to`` (embeddings [K, F]) it also
    returns, last, the cosine similarities [B, K] of every image's features with every one of those
    embeddings projected (the logits of a contrastive image-text loss, as in XMC-GAN, Zhang et al.
    2021).
    """

    def __init__(self, text_features: int, in_channels: int = 1, size: int = 28, hidden: int = 64,
                 batch_norm: bool = True):
        super().__init__()
        self.text_features, self.in_channels, self.size = text_features, in_channels, size
        self.num_classes = None
        self.image = DCGANDiscriminator(in_channels, size, hidden, batch_norm)
        self.project = nn.Linear(text_features, self.image.head.in_features, bias=False)
        init_dcgan_weights(self.project)

    def forward(self, x: torch.Tensor, *texts: torch.Tensor,
                similarity_to: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        check_input(x, self.in_channels, self.size, "image.text_dcgan discriminator")
        if not texts:
            raise ValueError("image.text_dcgan discriminator needs a text embedding next to the images")
        for t in texts:
            _check_embedding(t, self.text_features, x.shape[0], "image.text_dcgan discriminator")
        if similarity_to is not None:
            _check_embedding(similarity_to, self.text_features, len(similarity_to), "image.text_dcgan similarity_to")
        h = self.image.features(x)
        unconditional = self.image.head(h).squeeze(1)
        scores = tuple(unconditional + (self.project(t) * h).sum(1) for t in texts)
        if similarity_to is not None:
            scores += (F.normalize(h, dim=1) @ F.normalize(self.project(similarity_to), dim=1).T,)
        return scores[0] if len(scores) == 1 else scores


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class RefinerGenerator(nn.Module):
    """[B, channels, size, size] in [-1, 1] and a condition [B, condition_dim] -> [B, channels,
    2 * size, 2 * size] in [-1, 1] (tanh); any size >= 4."""

    def __init__(self, condition_dim: int, channels: int = 3, size: int = 32, hidden: int = 32,
                 blocks: int = 2):
        super().__init__()
        check_image(channels, size)
        self.condition_dim, self.channels, self.size = condition_dim, channels, size
        wide = 2 * hidden
        self.encode = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(hidden, wide, 4, stride=2, padding=1, bias=False),
                                    nn.BatchNorm2d(wide), nn.ReLU())
        self.join = nn.Sequential(nn.Conv2d(wide + condition_dim, wide, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(wide), nn.ReLU())
        self.blocks = nn.Sequential(*[_ResidualBlock(wide) for _ in range(blocks)])
        # the encoder halves the side (odd sides round down): the first upsampling restores it
        restore = nn.Upsample(scale_factor=2) if size % 2 == 0 else nn.Upsample(size=(size, size))
        self.decode = nn.Sequential(
            restore, nn.Conv2d(wide, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, channels, 3, padding=1), nn.Tanh())
        init_dcgan_weights(self)

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        check_input(image, self.channels, self.size, "image.refiner generator")
        _check_embedding(condition, self.condition_dim, image.shape[0], "image.refiner generator")
        h = self.encode(image)
        c = condition[:, :, None, None].expand(-1, -1, *h.shape[2:])
        return self.decode(self.blocks(self.join(torch.cat([h, c], 1))))
