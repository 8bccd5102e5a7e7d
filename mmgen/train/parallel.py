"""DistributedDataParallel for the trainer's steps.

DDP syncs gradients only for a forward that runs through it, but mmgen models are trained through
``loss(x)`` or a :class:`~mmgen.models.base.TrainingStep`'s ``loss(batch)``, not ``forward``. So
each training step gets its own DDP around a :class:`StepModule`: a module that holds the step's
parameters and the model's buffers (the same tensors, not copies) and whose forward is the step's
loss. Why one DDP per step, over that step's parameters only:

- A GAN's generator step runs the discriminator (its parameters get gradients there that the
  generator's optimizer never uses), and its discriminator step runs the generator under no_grad.
  A DDP over the whole model per step would sync parameters of the other step and, with two DDPs
  hooked on the same parameters, trips DDP's reducer; per-step parameters keep the DDPs disjoint.
- ``find_unused_parameters=True``: a step's loss may leave some of its parameters without gradient
  in a given batch (the VQ-VAE's prior during its autoencoder stage, its autoencoder during the
  prior stage). Their gradients stay None on every rank, as in a single process, so optimizers
  skip them. DDP logs a one-time note for steps that never have unused parameters.
- The model's buffers are broadcast from rank 0 before each forward (DDP's ``broadcast_buffers``):
  batch-norm statistics follow rank 0; VectorQuantizer all-reduces its own EMA statistics.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmgen.models.base import TrainingStep


class StepModule(nn.Module):
    """``forward(batch) == step.loss(batch)``, over ``step.parameters`` and ``model``'s buffers."""

    def __init__(self, model: nn.Module, step: TrainingStep):
        super().__init__()
        unique = list({id(p): p for p in step.parameters}.values())
        self.step_parameters = nn.ParameterList(unique)
        for i, buffer in enumerate(model.buffers()):
            self.register_buffer(f"model_buffer_{i}", buffer)
        self.step_loss = step.loss

    def forward(self, batch: dict) -> torch.Tensor:
        return self.step_loss(batch)


def wrap(model: nn.Module, step: TrainingStep, device: torch.device) -> DistributedDataParallel:
    """A DDP whose forward computes ``step``'s loss and whose backward all-reduces its gradients."""
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return DistributedDataParallel(StepModule(model, step), device_ids=device_ids,
                                   find_unused_parameters=True)
