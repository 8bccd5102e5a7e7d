"""Exponential moving averages of a module's weights (the GAN generator's and the diffusion
denoiser's), on ``torch.optim.swa_utils.AveragedModel``."""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["ema_of"]


def ema_of(module: nn.Module, decay: float) -> AveragedModel:
    """The exponential moving average of ``module``'s weights (its buffers are copied, not
    averaged: ``use_buffers=False``), starting from its weights now: the first update blends them
    with the live ones, as every later one does. Call ``update_parameters(module)`` after each
    optimizer step; the copy takes no gradient."""
    ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
    ema.n_averaged.fill_(1)  # the copy made here counts as the first average: no update copies again
    ema.register_load_state_dict_pre_hook(_ema_saved_as_a_plain_copy)
    return ema.requires_grad_(False)


def _ema_saved_as_a_plain_copy(module, state_dict, prefix, *_):
    """Files written before the EMA was an AveragedModel hold its weights as ``<prefix><name>``
    (now ``<prefix>module.<name>``) and no ``n_averaged``."""
    keys = [k for k in state_dict if k.startswith(prefix)]
    if keys and prefix + "n_averaged" not in state_dict:
        for key in keys:
            state_dict[f"{prefix}module.{key[len(prefix):]}"] = state_dict.pop(key)
        state_dict[prefix + "n_averaged"] = torch.tensor(1)
