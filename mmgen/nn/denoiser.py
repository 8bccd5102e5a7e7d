"""The trained part of a :class:`mmgen.models.Diffusion` model: a denoiser network with what turns
labels or captions into its condition vectors."""
from __future__ import annotations

import torch
from torch import nn

from mmgen.nn.labels import class_labels
from mmgen.nn.text_condition import TextEmbedder

__all__ = ["ConditionalDenoiser"]


class ConditionalDenoiser(nn.Module):
    """The trained part of a :class:`Diffusion` model: the denoiser and, for a conditional model,
    what turns labels or captions into its condition vectors (with the learned null condition)."""

    def __init__(self, denoiser: nn.Module, condition_dim: int, num_classes: int | None = None,
                 text: TextEmbedder | None = None):
        super().__init__()
        self.denoiser, self.text, self.num_classes = denoiser, text, num_classes
        if text is not None:
            self.condition_proj = nn.Linear(text.out_features, condition_dim)
        elif num_classes is not None:
            self.labels = nn.Embedding(num_classes, condition_dim)
        self.conditional = text is not None or num_classes is not None
        if self.conditional:
            self.null_condition = nn.Parameter(torch.zeros(condition_dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.denoiser(x_t, t, c)

    def null(self, batch: int) -> torch.Tensor:
        return self.null_condition.expand(batch, -1)

    def condition(self, y, batch: int) -> torch.Tensor | None:
        """The condition vectors [batch, condition_dim] of labels (one int or [batch]) or captions (one
        string or a list of batch), the null condition for ``y`` None; None for an unconditional model."""
        device = next(self.parameters()).device
        if not self.conditional:
            if y is not None:
                raise ValueError("this Diffusion model is unconditional: it takes no labels or captions")
            return None
        if y is None:
            return self.null(batch)
        if self.text is not None:
            captions = [y] * batch if isinstance(y, str) else y
            if not isinstance(captions, (list, tuple)) or len(captions) != batch:
                raise ValueError(f"Diffusion: pass one caption or a list of {batch} captions, got {y!r:.200}")
            return self.condition_proj(self.text(list(captions)).to(device))
        if isinstance(y, str) or isinstance(y, (list, tuple)) and any(isinstance(v, str) for v in y):
            raise ValueError(f"this Diffusion model conditions on class labels, not captions; got {y!r:.200}")
        return self.labels(class_labels(y, batch, self.num_classes, "Diffusion", device=device))
