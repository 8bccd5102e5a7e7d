"""Class labels given as a condition: one int or a batch of them, checked."""
from __future__ import annotations

import torch

__all__ = ["class_labels"]


def class_labels(y, batch: int, num_classes: int, who: str, *, name: str = "y", device=None) -> torch.Tensor:
    """``y`` (one int, or integer labels of shape ``[batch]``) as a LongTensor ``[batch]`` on
    ``device``; a float tensor, another shape or a label outside ``[0, num_classes)`` is a
    ValueError naming ``who`` and ``name``."""
    y = torch.as_tensor(y, device=device)
    if y.dim() == 0:
        y = y.expand(batch)
    if y.is_floating_point() or y.shape != (batch,):
        raise ValueError(f"{who}: {name} must be integer class labels of shape ({batch},), got {y.dtype} "
                         f"of shape {tuple(y.shape)}")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{who}: class labels must lie in [0, {num_classes}), got "
                         f"[{y.min().item()}, {y.max().item()}]")
    return y.long()
