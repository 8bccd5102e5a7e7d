"""A categorical bottleneck encoder built on the fused op (registered as ``gumbel.categorical``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.models.base import component
from mmgen_gumbel.ops import gumbel_softmax_sample


class CategoricalEncoder(nn.Module):
    """Wraps any encoder: a linear head gives ``latents x categories`` logits, and the output is a
    Gumbel-softmax sample of them (training) or the one-hot of the most probable category (eval),
    flattened to ``[B, latents * categories]``.

    Args:
        encoder: module or spec ``{"name": ..., **kwargs}`` with ``out_features``.
        latents, categories: number of categorical variables and of values per variable (>= 2).
        tau: temperature of the relaxation; hard: straight-through one-hot samples when training.
    """

    def __init__(self, encoder, latents: int = 8, categories: int = 10, tau: float = 1.0, hard: bool = False):
        super().__init__()
        self.encoder, _ = component(encoder, "encoder", "gumbel.categorical encoder")
        if not isinstance(getattr(self.encoder, "out_features", None), int):
            raise ValueError(f"gumbel.categorical: encoder {type(self.encoder).__name__} has no integer "
                             "attribute 'out_features' (see the component contract)")
        if isinstance(latents, bool) or not isinstance(latents, int) or latents < 1 or \
                isinstance(categories, bool) or not isinstance(categories, int) or categories < 2:
            raise ValueError(f"gumbel.categorical needs latents >= 1 and categories >= 2, got latents={latents!r}, "
                             f"categories={categories!r}")
        self.latents, self.categories, self.tau, self.hard = latents, categories, float(tau), hard
        self.out_features = latents * categories
        self.head = nn.Linear(self.encoder.out_features, self.out_features)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, latents, categories]`` unnormalized log-probabilities."""
        return self.head(self.encoder(x)).view(-1, self.latents, self.categories)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        logits = self.logits(x)
        if self.training:
            z = gumbel_softmax_sample(logits, tau=self.tau, hard=self.hard, generator=generator)
        else:
            z = F.one_hot(logits.argmax(-1), self.categories).to(logits.dtype)
        return z.flatten(1)
