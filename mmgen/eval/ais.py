"""Annealed importance sampling (Neal 2001) of log p(x) for latent-variable models, as used to compare
decoder-based generative models by Wu et al. (2017).

A model qualifies when it has ``latent_dim``, ``log_prior(z)`` (log p(z) per row) and
``log_likelihood(x, z, **cond)`` (log p(x | z) per row): the VAE (with or without flows), AVB and the
CVAE (``y`` passed as ``cond``). The chains start from N(0, I) and move through the distributions
f_t(z) = N(z; 0, I)^(1 - b_t) (p(z) p(x | z))^(b_t), 0 = b_0 < ... < b_T = 1, each step leaving
f_t invariant with Hamiltonian Monte Carlo (``leapfrog`` steps, a step size per chain adapted
towards ``target_accept``). The log-weight of a chain, sum_t (b_t - b_(t-1)) log [p(z) p(x|z) /
N(z; 0, I)] at the chain's state, has E[w] = p(x): the estimate log (1/C) sum_c w_c is a stochastic
lower bound on log p(x) that tightens as ``steps`` and ``chains`` grow.
"""
from __future__ import annotations

import math

import torch

from mmgen.models.vae import standard_log_density

__all__ = ["ais_log_likelihood", "schedule", "metric", "SCHEDULES"]

SCHEDULES = ("sigmoid", "linear")
REQUIRED = ("latent_dim", "log_prior", "log_likelihood")
ADAPT_RATE = 0.2  # log step size change per transition: exp(0.2 * (accepted - target_accept))


def schedule(steps: int, kind: str = "sigmoid", sharpness: float = 4.0) -> torch.Tensor:
    """b_0 = 0 < ... < b_steps = 1 (float64): evenly spaced ("linear"), or a sigmoid of evenly
    spaced points in [-sharpness, sharpness], rescaled to [0, 1] (Grosse et al. 2015: small steps
    near both ends)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"AIS steps (intermediate distributions) must be an int >= 1, got {steps!r}")
    if kind not in SCHEDULES:
        raise ValueError(f"unknown AIS schedule {kind!r}; accepted: {', '.join(SCHEDULES)}")
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    if kind == "linear":
        return t
    s = torch.sigmoid(sharpness * (2 * t - 1))
    return (s - s[0]) / (s[-1] - s[0])


def _check_model(model) -> None:
    missing = [name for name in REQUIRED if not hasattr(model, name)]
    if missing:
        raise TypeError(f"AIS needs a model with a latent prior and a decoder likelihood ({', '.join(REQUIRED)}: "
                        f"the VAE, AVB, CVAE); a {type(model).__name__} has no {', '.join(missing)}")


def _repeat(value, chains: int):
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return value.repeat(chains, *[1] * (value.dim() - 1))
    if isinstance(value, (list, tuple)):
        return list(value) * chains
    return value


def ais_log_likelihood(model, x: torch.Tensor, *, steps: int = 500, chains: int = 16, leapfrog: int = 10,
                       step_size: float = 0.2, target_accept: float = 0.65, schedule_kind: str = "sigmoid",
                       generator: torch.Generator | None = None, on_step=None, **cond) -> torch.Tensor:
    """The AIS estimate of log p(x [| cond]) per example, in nats, ``[B]`` (see the module docs).
    ``on_step(t)``, when given, is called after the t-th of the ``steps`` transitions."""
    _check_model(model)
    for name, value, low in (("chains", chains, 1), ("leapfrog", leapfrog, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"AIS {name} must be an int >= {low}, got {value!r}")
    if not step_size > 0 or not 0 < target_accept < 1:
        raise ValueError(f"AIS needs step_size > 0 and 0 < target_accept < 1, got step_size={step_size!r}, "
                         f"target_accept={target_accept!r}")
    betas = schedule(steps, schedule_kind).tolist()
    batch = len(x)
    xs = _repeat(x, chains)
    cond = {key: _repeat(value, chains) for key, value in cond.items()}
    device = x.device
    dtype = next(model.parameters()).dtype

    def log_ratio(z: torch.Tensor):
        """g(z) = log p(z) + log p(x|z) - log N(z; 0, I) and its gradient, per row."""
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            g = model.log_prior(z) + model.log_likelihood(xs, z, **cond) - standard_log_density(z)
            grad, = torch.autograd.grad(g.sum(), z)
        return g.detach(), grad

    z = torch.randn(chains * batch, model.latent_dim, generator=generator, device=device, dtype=dtype)
    g, grad_g = log_ratio(z)
    log_w = torch.zeros(chains * batch, dtype=torch.float64, device=device)
    eps = torch.full((chains * batch, 1), float(step_size), device=device, dtype=dtype)
    for t, (previous, beta) in enumerate(zip(betas[:-1], betas[1:]), 1):
        log_w += (beta - previous) * g.double()

        def energy(z_, g_):  # -log f_t(z) up to a constant
            return 0.5 * z_.square().sum(1) - beta * g_

        p0 = torch.randn(z.shape, generator=generator, device=device, dtype=dtype)
        z1, g1, grad1 = z, g, grad_g
        p = p0 - 0.5 * eps * (z1 - beta * grad1)
        for step in range(leapfrog):
            z1 = z1 + eps * p
            g1, grad1 = log_ratio(z1)
            force = z1 - beta * grad1
            p = p - (eps if step < leapfrog - 1 else 0.5 * eps) * force
        log_accept = energy(z, g) + 0.5 * p0.square().sum(1) - energy(z1, g1) - 0.5 * p.square().sum(1)
        u = torch.rand(log_accept.shape, generator=generator, device=device, dtype=dtype)
        accept = torch.log(u) < torch.nan_to_num(log_accept, nan=-math.inf)
        keep = accept.unsqueeze(1)
        z, g, grad_g = torch.where(keep, z1, z), torch.where(accept, g1, g), torch.where(keep, grad1, grad_g)
        # up after an acceptance, down after a rejection: in balance at the target acceptance rate
        eps = (eps * torch.exp(ADAPT_RATE * (keep.to(dtype) - target_accept))).clamp(1e-4, 1.0)
        if on_step is not None:
            on_step(t)
    return torch.logsumexp(log_w.view(chains, batch), 0) - math.log(chains)


def metric(model, data, *, steps: int = 100, chains: int = 4, leapfrog: int = 5, step_size: float = 0.2,
           schedule_kind: str = "sigmoid", max_examples: int | None = 100, batch_size: int = 50,
           progress: bool = True) -> dict:
    """The registered metric ``mmgen.ais``: the AIS negative log-likelihood over ``data`` (the first
    ``max_examples``; None: all), in nats per example, and in bits per dimension. Progress (AIS
    transitions done over all batches, ETA) goes to stderr like the evaluation's."""
    from mmgen.eval import LINE_EVERY_S
    from mmgen.models.base import batch_condition
    from mmgen.train.progress import Progress
    _check_model(model)
    device = next(model.parameters()).device
    examples = len(data) if max_examples is None else min(len(data), max_examples)
    per_batch = steps  # transitions per batch (steps + 1 distributions)
    bar = Progress(per_batch * math.ceil(examples / batch_size), 0, enabled=progress, unit="AIS step",
                   desc="mmgen.ais", line_every_s=LINE_EVERY_S)
    total, n, done = 0.0, 0, 0
    for batch in data.batches(batch_size):
        x = batch["x"]
        if max_examples is not None:
            x = x[: max_examples - n]
        if not len(x):
            break
        cond = batch_condition(model, batch, rows=len(x), device=device)
        log_p = ais_log_likelihood(model, x.to(device), steps=steps, chains=chains, leapfrog=leapfrog,
                                   step_size=step_size, schedule_kind=schedule_kind,
                                   on_step=lambda t, base=done: bar.update(base + t, {}), **cond)
        done += per_batch
        total -= log_p.double().sum().item()
        n += len(x)
    bar.close()
    nll = total / n
    return {"nll": nll, "bits_per_dim": nll / (math.prod(data.shape) * math.log(2)), "examples": n}
