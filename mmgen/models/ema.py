"""Exponential moving averages of a module's weights (the GAN generator's and the diffusion
denoiser's), on ``torch.optim.swa_utils.AveragedModel``."""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["ema_of"]


def ema_of(module: nn.Module, decay: float, warmup: bool = False) -> AveragedModel:
    """The exponential moving average of ``module``'s weights (its buffers are copied, not
    averaged: ``use_buffers=False``), starting from its weights now: the first update blends them
    with the live ones, as every later one does. Call ``update_parameters(module)`` after each
    optimizer step; the copy takes no gradient.

    ``warmup``: the k-th update uses the decay min(``decay``, (1 + k) / (10 + k)) (the count of
    TensorFlow's ``ExponentialMovingAverage``), so the average spans about the last k / 9 steps
    until it reaches ``decay``, and the initial weights are forgotten early instead of keeping a
    share ``decay``^k (5% after 3,000 steps at 0.999). The count is the saved ``n_averaged``: a
    resumed run goes on with it."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"ema decay must be in [0, 1], got {decay!r}")
    average = _warmup_ema(decay) if warmup else get_ema_multi_avg_fn(decay)
    ema = AveragedModel(module, multi_avg_fn=average, use_buffers=False)
    ema.n_averaged.fill_(1)  # the copy made here counts as the first average: no update copies again
    ema.register_load_state_dict_pre_hook(_ema_saved_as_a_plain_copy)
    return ema.requires_grad_(False)


def _warmup_ema(decay: float):
    """``AveragedModel``'s multi_avg_fn for :func:`ema_of` with ``warmup`` (the update count is
    ``n_averaged``, read on the host: one scalar per step on a GPU)."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], live: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        k = int(n_averaged)
        torch._foreach_lerp_(averaged, live, 1.0 - min(decay, (1.0 + k) / (10.0 + k)))

    return update


def _ema_saved_as_a_plain_copy(module, state_dict, prefix, *_):
    """Files written before the EMA was an AveragedModel hold its weights as ``<prefix><name>``
    (now ``<prefix>module.<name>``) and no ``n_averaged``."""
    keys = [k for k in state_dict if k.startswith(prefix)]
    if keys and prefix + "n_averaged" not in state_dict:
        for key in keys:
            state_dict[f"{prefix}module.{key[len(prefix):]}"] = state_dict.pop(key)
        state_dict[prefix + "n_averaged"] = torch.tensor(1)
