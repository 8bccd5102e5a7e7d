"""Evaluation in the units of the literature: nats per example and bits per dimension.

``evaluate(model, data)`` picks what the model supports: the ELBO (VAEs), an importance-weighted NLL
estimate with ``k`` samples (IWAE bound; it is an upper bound on the true NLL in expectation), the
exact NLL (autoregressive models), bits/dim derived from the NLL, and the reconstruction error.
"""
from __future__ import annotations

import math

import torch


@torch.no_grad()
def evaluate(model, data, *, k: int = 1000, batch_size: int = 100, device: str | None = None,
             max_examples: int | None = None) -> dict:
    """Average metrics over ``data`` (a :class:`mmgen.data.Dataset`), in nats per example."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for batch in data.batches(batch_size):
        x = batch["x"].to(device)
        if max_examples is not None and n >= max_examples:
            break
        if max_examples is not None:
            x = x[: max_examples - n]
        parts = {}
        if hasattr(model, "elbo"):
            parts["elbo"] = model.elbo(x)
        if hasattr(model, "iwae_bound"):
            parts[f"nll_iwae_k{k}"] = -model.iwae_bound(x, k)
        elif hasattr(model, "nll"):
            parts["nll"] = model.nll(x)
        if hasattr(model, "reconstruct"):
            recon = model.reconstruct(x).float()
            target = x.float()
            parts["recon_mse"] = (recon - target).reshape(len(x), -1).square().mean(1)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value.double().sum().item()
        n += len(x)
    model.train(was_training)
    metrics = {key: value / n for key, value in sums.items()}
    dims = math.prod(data.shape)
    nll_key = next((key for key in metrics if key.startswith("nll")), None)
    if nll_key is not None:
        metrics["bits_per_dim"] = metrics[nll_key] / (dims * math.log(2))
    elif "elbo" in metrics:
        metrics["bits_per_dim_elbo"] = -metrics["elbo"] / (dims * math.log(2))
    metrics["examples"] = n
    return metrics


def uniform_nll(data) -> float | None:
    """NLL in nats of the uniform distribution over the data's levels (a baseline)."""
    levels = getattr(data, "levels", None) or 2
    return math.prod(data.shape) * math.log(levels)


__all__ = ["evaluate", "uniform_nll"]
