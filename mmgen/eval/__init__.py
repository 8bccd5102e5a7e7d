"""Evaluation in the units of the literature: nats per example and bits per dimension.

``evaluate(model, data)`` picks what the model supports: the ELBO (VAEs), an importance-weighted NLL
estimate with ``k`` samples (IWAE bound; it is an upper bound on the true NLL in expectation), the
exact NLL (autoregressive models; ``nll``, else ``-log_prob``), bits/dim derived from the NLL, and
the reconstruction error;
codebook usage and perplexity over the whole split (models with ``codes``, e.g. VQVAE); the
classification error (models with ``classify``, e.g. M2). Models with ``condition_on_labels``
get the labels as ``y``, except those with ``classify``: for them y is a latent variable that
the bound marginalizes, and the labels only score the classifier.
Text models (with ``tokens_per_example``, e.g. SentenceVAE) get the ELBO and NLL per word
(words + <eos>, the tokens the likelihood predicts) and the perplexity instead of bits/dim, and
``kl`` (models with ``kl_divergence``) is KL(q(z|x) || p(z)) per example.

``eval_seconds`` is the wall time of the whole evaluation and ``seconds_<metric>`` the part of it
spent computing each metric. Progress (examples done, ETA) goes to stderr like the trainer's
(:class:`mmgen.train.progress.Progress`; ``progress=False`` turns it off). The IWAE bound runs the
decoder on as many importance samples per pass as keep the pass's largest tensor within
``max_bytes`` (default ``mmgen.models.vae.PASS_BYTES``, 32 MiB), with glibc keeping freed blocks
for the next pass (:func:`mmgen.memory.keep_freed_memory`).
"""
from __future__ import annotations

import inspect
import math
import time

import torch

from mmgen.memory import keep_freed_memory
from mmgen.models.base import batch_condition
from mmgen.models.vae import PASS_BYTES, check_max_bytes
from mmgen.train.progress import Progress

LINE_EVERY_S = 10.0  # without a terminal: a progress line at most this often


@torch.no_grad()
def evaluate(model, data, *, k: int = 1000, batch_size: int = 100, device: str | None = None,
             max_examples: int | None = None, max_bytes: int = PASS_BYTES, progress: bool = True) -> dict:
    """Average metrics over ``data`` (a :class:`mmgen.data.Dataset`), in nats per example."""
    check_max_bytes(max_bytes)
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    keep_freed_memory()
    iwae_options = {"max_bytes": max_bytes} if hasattr(model, "iwae_bound") and \
        "max_bytes" in inspect.signature(model.iwae_bound).parameters else {}
    sums: dict[str, float] = {}
    seconds: dict[str, float] = {}
    code_counts = None
    n = errors = labelled = tokens = 0
    total = len(data) if max_examples is None else min(len(data), max_examples)
    bar = Progress(total, 0, enabled=progress, unit="example", desc="eval", line_every_s=LINE_EVERY_S)
    started = time.perf_counter()

    def timed(key, fn, *args, **kwargs):
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0
        return value

    for batch in data.batches(batch_size):
        x = batch["x"].to(device)
        if max_examples is not None and n >= max_examples:
            break
        if max_examples is not None:
            x = x[: max_examples - n]
        parts, cond = {}, {}
        if hasattr(model, "classify"):
            y = batch["y"][: len(x)].to(device)
            known = y >= 0  # -1 marks an unlabelled example
            errors += (model.classify(x)[known] != y[known]).sum().item()
            labelled += known.sum().item()
        else:
            cond = batch_condition(model, batch, rows=len(x), device=device)
        if hasattr(model, "codes"):
            counts = torch.bincount(model.codes(x).flatten().cpu(), minlength=model.num_codes)
            code_counts = counts if code_counts is None else code_counts + counts
        if hasattr(model, "elbo"):
            parts["elbo"] = timed("elbo", model.elbo, x, **cond)
        if hasattr(model, "iwae_bound"):
            parts[f"nll_iwae_k{k}"] = -timed(f"nll_iwae_k{k}", model.iwae_bound, x, k, **iwae_options)
        elif hasattr(model, "nll"):
            parts["nll"] = timed("nll", model.nll, x)
        elif hasattr(model, "log_prob"):
            parts["nll"] = -timed("nll", model.log_prob, x)
        if hasattr(model, "kl_divergence"):
            parts["kl"] = timed("kl", model.kl_divergence, x)
        if hasattr(model, "tokens_per_example"):  # text: words (+ <eos>) the likelihood predicts
            tokens += model.tokens_per_example(x).sum().item()
        elif hasattr(model, "reconstruct"):
            recon = timed("recon_mse", model.reconstruct, x, **cond).float()
            target = x.float()
            parts["recon_mse"] = (recon - target).reshape(len(x), -1).square().mean(1)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value.double().sum().item()
        n += len(x)
        bar.update(n, {})
    bar.close()
    model.train(was_training)
    metrics = {key: value / n for key, value in sums.items()}
    if labelled:
        metrics["error"] = errors / labelled
    if code_counts is not None:
        probs = code_counts.double() / code_counts.sum()
        metrics["codebook_usage"] = (code_counts > 0).double().mean().item()
        metrics["codebook_perplexity"] = torch.exp(-(probs * probs.clamp(min=1e-30).log()).sum()).item()
    dims = math.prod(data.shape)
    nll_key = next((key for key in metrics if key.startswith("nll")), None)
    if tokens:  # per word (+ <eos>) instead of per padded position
        for key in [name for name in ("elbo", nll_key) if name in metrics]:
            metrics[f"{key}_per_word"] = metrics[key] * n / tokens
        if nll_key is not None:
            metrics["perplexity"] = math.exp(metrics[f"{nll_key}_per_word"])
        metrics["words_per_example"] = tokens / n
    elif nll_key is not None:
        metrics["bits_per_dim"] = metrics[nll_key] / (dims * math.log(2))
    elif "elbo" in metrics:
        metrics["bits_per_dim_elbo"] = -metrics["elbo"] / (dims * math.log(2))
    metrics["examples"] = n
    metrics["eval_seconds"] = time.perf_counter() - started
    metrics.update({f"seconds_{key}": value for key, value in seconds.items()})
    return metrics


def uniform_nll(data) -> float | None:
    """NLL in nats of the uniform distribution over the data's levels (a baseline)."""
    if getattr(data, "vocab", None):  # token ids (<pad> = 0): uniform over the vocabulary per word, <eos>
        return (data.x[:, 1:] > 0).sum(1).double().mean().item() * math.log(len(data.vocab))
    levels = getattr(data, "levels", None) or 2
    return math.prod(data.shape) * math.log(levels)


__all__ = ["evaluate", "uniform_nll"]
