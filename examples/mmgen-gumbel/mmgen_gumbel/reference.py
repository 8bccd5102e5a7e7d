"""Pure-PyTorch reference of the mmgen_gumbel ops (also the fallback without a native build)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _scores(logits: torch.Tensor, uniform: torch.Tensor, tau: float) -> torch.Tensor:
    """(logits + g) / tau with g = -log(-log(u)), computed in float32 (float64 for float64 input)."""
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    finfo = torch.finfo(acc)
    u = uniform.to(acc).clamp(finfo.tiny, 1 - finfo.eps)
    return (logits.to(acc) - torch.log(-torch.log(u))) / tau


def gumbel_softmax_sample(logits: torch.Tensor, uniform: torch.Tensor, tau: float, hard: bool) -> torch.Tensor:
    """Relaxed sample ``softmax(scores)`` over the last dim, or with ``hard`` its one-hot argmax whose
    gradient is the relaxed sample's (straight-through)."""
    scores = _scores(logits, uniform, tau)
    y = torch.softmax(scores, dim=-1)
    if hard:
        one_hot = F.one_hot(scores.argmax(dim=-1), scores.shape[-1]).to(y.dtype)
        y = y + (one_hot - y).detach()
    return y.to(logits.dtype)
