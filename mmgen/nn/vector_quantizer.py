"""VectorQuantizer: the VQ-VAE bottleneck (nearest code, straight-through gradient)."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from mmgen import ops

__all__ = ["VectorQuantizer", "VQOutput"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class VQOutput(NamedTuple):
    quantized: torch.Tensor   # [..., D] in x's dtype; its gradient passes straight through to x
    indices: torch.Tensor     # [...] int64 code indices
    loss: torch.Tensor        # scalar: beta * commitment loss (+ codebook loss without EMA)
    perplexity: torch.Tensor  # exp(entropy of this batch's code histogram); K means uniform use
    usage: torch.Tensor       # fraction of the K codes used by this batch


class VectorQuantizer(nn.Module):
    """Maps each D-vector of x ``[..., D]`` (channels last: permute ``[B, C, H, W]`` images to
    ``[B, H, W, C]`` first) to its nearest code.

    The codebook is learned either by gradient (``ema=False``: the loss includes the codebook term
    ``mse(q, x.detach())``) or, with ``ema=True``, as exponential moving averages of the rows
    assigned to each code (Laplace-smoothed counts; the loss is then ``beta`` times the commitment
    loss only). In training mode, codes used by fewer than ``dead_code_threshold`` rows per batch
    (an EMA over about ``1 / (1 - decay)`` batches) are restarted from random rows of the current
    batch; with no statistics yet, the first training batch initializes every code this way.
    ``dead_code_threshold=0`` disables restarts. Distances and codebook updates run in float32,
    also under autocast. Under ``torch.distributed`` the counts and sums are all-reduced and the
    restart rows come from rank 0, so every rank keeps the same codebook. ``perplexity`` and
    ``usage`` describe the local batch. With ``ema=True`` each training call replaces the
    ``codebook`` buffer by a new tensor (see ``_update_statistics``): read ``vq.codebook`` after the
    call rather than keeping a reference to it. A training call compiles with
    ``torch.compile(fullgraph=True)``: nothing in it reads tensor values on the host.
    """

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, ema: bool = True,
                 decay: float = 0.99, eps: float = 1e-5, dead_code_threshold: float = 1.0,
                 backend: str = "auto"):
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"VectorQuantizer: num_codes and dim must be >= 1, got {num_codes} "
                             f"and {dim}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"VectorQuantizer: decay must be in [0, 1), got {decay}")
        if eps <= 0 or dead_code_threshold < 0 or beta < 0:
            raise ValueError(f"VectorQuantizer: eps must be > 0 and beta, dead_code_threshold >= 0, "
                             f"got eps={eps}, beta={beta}, dead_code_threshold={dead_code_threshold}")
        self.num_codes, self.dim, self.beta, self.ema = num_codes, dim, float(beta), ema
        self.decay, self.eps, self.dead_code_threshold = decay, eps, dead_code_threshold
        self.backend = backend
        init = torch.empty(num_codes, dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("embed_sum", torch.zeros(num_codes, dim))
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("cluster_size", torch.zeros(num_codes))  # EMA of rows per code
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}, ema={self.ema}, "
                f"decay={self.decay}, dead_code_threshold={self.dead_code_threshold}")

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors ``[..., D]`` for int64 indices ``[...]``."""
        return nn.functional.embedding(indices, self.codebook)

    def forward(self, x: torch.Tensor) -> VQOutput:
        if x.shape[-1:] != (self.dim,):
            raise ValueError(f"VectorQuantizer: expected x of shape [..., {self.dim}] (channels last), "
                             f"got {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            x32 = x.float()
            flat = x32.detach().reshape(-1, self.dim)
            if self.training and self.dead_code_threshold > 0:
                self._restart_dead_codes(flat)
            # The EMA update below writes the buffers in place; the op keeps its own copy for backward.
            codebook = self.codebook.clone() if self.ema else self.codebook
            quantized, indices, loss = ops.vector_quantize(x32, codebook, beta=self.beta,
                                                           backend=self.backend)
            if self.ema:
                # The codebook term has the commitment's value and no gradient here: drop its value.
                loss = loss - loss.detach() / (1.0 + self.beta)
            flat_idx = indices.reshape(-1)
            counts = torch.zeros(self.num_codes, device=x.device).index_add_(
                0, flat_idx, torch.ones_like(flat_idx, dtype=torch.float32))
            if self.training:
                self._update_statistics(flat, flat_idx, counts)
            probs = counts / counts.sum().clamp(min=1.0)
            perplexity = torch.exp(-(probs * torch.log(probs.clamp(min=1e-12))).sum())
            usage = (counts > 0).float().mean()
        return VQOutput(quantized.to(x.dtype), indices, loss, perplexity, usage)

    @torch.no_grad()
    def _update_statistics(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor):
        if self.ema:
            counts, sums = ops.vq_ema_stats(flat, indices, self.num_codes, backend=self.backend)
            if _distributed():
                dist.all_reduce(counts)
                dist.all_reduce(sums)
            self.embed_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        elif _distributed():
            counts = counts.clone()
            dist.all_reduce(counts)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.num_updates += 1
        if self.ema:
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
            updated = self.embed_sum / smoothed.unsqueeze(1)
            # Replaced, not written in place: this step's backward reads the codebook it quantized
            # with, and torch 2.11's compiled backward may recompute that copy from the buffer after
            # an in-place update (pytorch/pytorch#197039).
            self.codebook = torch.where(self.cluster_size.unsqueeze(1) > 0, updated, self.codebook)

    def _bias_correction(self) -> torch.Tensor:
        return 1.0 - self.decay ** self.num_updates.double()

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor):
        # Written without host syncs or data-dependent shapes, so that a training step compiles into
        # one graph: a random permutation of the rows is drawn every step, and the i-th dead code (in
        # index order) takes row perm[i mod N].
        n = flat.shape[0]
        distributed = _distributed()
        if n == 0 and not distributed:
            return
        correction = self._bias_correction()
        first = self.num_updates == 0  # no statistics yet: every code starts from a row
        dead = first | (self.cluster_size / correction.float() < self.dead_code_threshold)
        if n == 0:  # this rank only joins the broadcast
            samples = flat.new_zeros(self.num_codes, self.dim)
        else:
            rank = (dead.cumsum(0) - 1).clamp(min=0)
            samples = flat[torch.randperm(n, device=flat.device)[rank % n]]
        samples = samples.to(self.codebook.dtype)
        if distributed:
            dist.broadcast(samples, src=0)
        dead_rows = dead.unsqueeze(1)
        self.codebook.copy_(torch.where(dead_rows, samples, self.codebook))
        # A restarted code counts as used by exactly `dead_code_threshold` rows so far.
        restarted_size = (self.dead_code_threshold * correction).float()
        self.cluster_size.copy_(torch.where(dead, restarted_size, self.cluster_size))
        if self.ema:
            self.embed_sum.copy_(torch.where(dead_rows, samples * restarted_size, self.embed_sum))
