"""Pure-PyTorch references of every mmgen op.

They define what the kernels compute (the tests compare against them) and are the fallback when the
native extension is missing. They draw the same Philox numbers as the kernels (see
``csrc/ops/philox.h``), so a reference and a native result for the same (seed, offset) agree to
rounding.
"""
from __future__ import annotations

import math

import torch

_MASK = 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------
# Philox4x32-10 and Box-Muller, as in csrc/ops/philox.h
# ----------------------------------------------------------------------------------------------
def philox4x32_10(counter: list[torch.Tensor], key: tuple[int, int]) -> list[torch.Tensor]:
    """Philox4x32-10 on int64 tensors holding uint32 values (products wrap like uint64)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0 = c0 * 0xD2511F53
        p1 = c2 * 0xCD9E8D57
        c0, c1, c2, c3 = ((p1 >> 32) & _MASK) ^ c1 ^ k0, p1 & _MASK, ((p0 >> 32) & _MASK) ^ c3 ^ k1, p0 & _MASK
        k0 = (k0 + 0x9E3779B9) & _MASK
        k1 = (k1 + 0xBB67AE85) & _MASK
    return [c0, c1, c2, c3]


def philox_normal(numel: int, seed: int, offset: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu", start: int = 0) -> torch.Tensor:
    """The standard normals the kernels draw for elements start..start+numel-1 (float64 for float64,
    else float32); ``start`` a multiple of 4."""
    if start < 0 or start % 4:
        raise ValueError(f"philox_normal: start must be a non-negative multiple of 4, got {start}")
    groups = (numel + 3) // 4
    g = torch.arange(start // 4, start // 4 + groups, dtype=torch.int64, device=device)
    base = (offset % 2 ** 64) // 4  # native state tensors hold the uint64 offset as an int64
    counter = [torch.full_like(g, base & _MASK), torch.full_like(g, (base >> 32) & _MASK),
               g & _MASK, (g >> 32) & _MASK]
    x, y, z, w = philox4x32_10(counter, (seed & _MASK, (seed >> 32) & _MASK))
    if dtype == torch.float64:
        u0 = (x.double() + 0.5) * 2.0 ** -32
        u1 = (z.double() + 0.5) * 2.0 ** -32
    else:
        u0 = (x.float() * 2.0 ** -32 + 2.0 ** -33).double()
        u1 = (z.float() * 2.0 ** -32 + 2.0 ** -33).double()
    r0, r1 = torch.sqrt(-2.0 * torch.log(u0)), torch.sqrt(-2.0 * torch.log(u1))
    t0 = (y.double() + 0.5) * (2.0 * math.pi * 2.0 ** -32)
    t1 = (w.double() + 0.5) * (2.0 * math.pi * 2.0 ** -32)
    out = torch.stack([r0 * torch.cos(t0), r0 * torch.sin(t0), r1 * torch.cos(t1), r1 * torch.sin(t1)], 1)
    return out.reshape(-1)[:numel].to(torch.float64 if dtype == torch.float64 else torch.float32)


_cpu_offsets: dict[int, tuple[bytes, int]] = {}


def philox_seed_offset(generator: torch.Generator | None, device: torch.device,
                       increment: int = 4) -> tuple[int, int]:
    """(seed, offset) for one call, advancing the generator like the native kernels do.

    CUDA generators have a Philox offset of their own. A CPU generator has none, so one is kept
    per generator exactly as ``csrc/ops/cpu/rng.cpp`` does: 0 right after seeding, then advancing by
    ``increment`` per call (each call also draws once from the generator to mark it used).
    """
    if generator is None:
        generator = (torch.cuda.default_generators[device.index or 0] if device.type == "cuda"
                     else torch.default_generator)
    seed = generator.initial_seed()
    if generator.device.type != "cpu":
        offset = generator.get_offset()
        generator.set_offset(offset + increment)
        return seed, offset
    state = generator.get_state().numpy().tobytes()
    fresh = torch.Generator().manual_seed(seed).get_state().numpy().tobytes()
    known = _cpu_offsets.get(id(generator))
    if state == fresh:
        offset = 0
    elif known is not None and known[0] == state:
        offset = known[1]
    else:
        offset = int(torch.randint(0, 2 ** 62, (), generator=generator)) & ~3
    torch.randint(0, 2, (), generator=generator)
    _cpu_offsets[id(generator)] = (generator.get_state().numpy().tobytes(), offset + increment)
    return seed, offset


# ----------------------------------------------------------------------------------------------
# Reparameterization and Gaussian KL
# ----------------------------------------------------------------------------------------------
def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over all dims but 0."""
    m, lv = mu.to(_opmath(mu.dtype)), logvar.to(_opmath(mu.dtype))
    kl = 0.5 * (torch.exp(lv) + m * m - 1.0 - lv).reshape(mu.shape[0], -1).sum(1)
    return kl.to(mu.dtype)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, seed: int, offset: int,
                   return_kl: bool = False):
    """z = mu + exp(logvar / 2) * eps with eps = philox_normal(seed, offset); (z, kl or None)."""
    eps = philox_normal(mu.numel(), seed, offset, mu.dtype, mu.device).view(mu.shape)
    m, lv = mu.to(eps.dtype), logvar.to(eps.dtype)
    z = (m + torch.exp(0.5 * lv) * eps).to(mu.dtype)
    return z, (gaussian_kl(mu, logvar) if return_kl else None)


# ----------------------------------------------------------------------------------------------
# Vector quantization
# ----------------------------------------------------------------------------------------------
def vq_nearest(x: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmin_k ||x_i - e_k||^2, ||x_i - e_idx||^2) for x [N, D], codebook [K, D].

    Distances are ranked as ``||e||^2 - 2 x.e``; ties go to the lowest index, a code at NaN
    distance is never chosen, and a row with no non-NaN distance (e.g. NaN in x) gets index 0
    (its sqdist is then NaN).
    """
    dt = _opmath(x.dtype)
    a, e = x.to(dt), codebook.to(dt)
    dist = (e * e).sum(1) - 2.0 * (a @ e.T)
    indices = dist.nan_to_num(nan=math.inf, posinf=math.inf, neginf=-math.inf).argmin(1)
    sqdist = ((a - e[indices]) ** 2).sum(1)
    return indices, sqdist.to(x.dtype)


def vector_quantize(x: torch.Tensor, codebook: torch.Tensor, beta: float = 0.25):
    """Straight-through VQ of x [..., D]: (x + (q - x).detach(), indices [...], loss) with
    q = codebook[indices] and loss = mse(q, x.detach()) + beta * mse(x, q.detach())."""
    with torch.no_grad():
        indices, _ = vq_nearest(x.detach().reshape(-1, x.shape[-1]), codebook.detach())
    q = codebook[indices].view(x.shape)
    out = x + (q - x).detach()
    loss = (torch.nn.functional.mse_loss(q, x.detach())
            + beta * torch.nn.functional.mse_loss(x, q.detach()))
    return out, indices.view(x.shape[:-1]), loss


def vq_ema_stats(x: torch.Tensor, indices: torch.Tensor, num_codes: int):
    """(counts [K], sums [K, D]): rows of x [..., D] per code and their sum (float32, or float64
    for float64 x)."""
    dt = _opmath(x.dtype)
    flat, idx = x.reshape(-1, x.shape[-1]).to(dt), indices.reshape(-1)
    counts = torch.zeros(num_codes, dtype=dt, device=x.device).index_add_(
        0, idx, torch.ones_like(idx, dtype=dt))
    sums = torch.zeros(num_codes, x.shape[-1], dtype=dt, device=x.device).index_add_(0, idx, flat)
    return counts, sums


# ----------------------------------------------------------------------------------------------
# Masked convolution (PixelCNN)
# ----------------------------------------------------------------------------------------------
def masked_conv2d_mask(c_out: int, c_in: int, kh: int, kw: int, mask_type: str = "B",
                       color_groups: int = 1, *, dtype: torch.dtype = torch.float32,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """The [c_out, c_in, kh, kw] 0/1 PixelCNN mask.

    Taps above the centre row and left of the centre are kept. At the centre, with channels split
    into ``color_groups`` contiguous groups, output group g sees input groups < g (mask "A") or
    <= g (mask "B"); with one group that is "nothing" for "A" and "everything" for "B".
    """
    mask = torch.zeros(c_out, c_in, kh, kw, dtype=dtype, device=device)
    mask[:, :, : kh // 2] = 1
    mask[:, :, kh // 2, : kw // 2] = 1
    out_group = torch.arange(c_out, device=device) // (c_out // color_groups)
    in_group = torch.arange(c_in, device=device) // (c_in // color_groups)
    sees = in_group[None, :] < out_group[:, None] if mask_type == "A" else in_group[None, :] <= out_group[:, None]
    mask[:, :, kh // 2, kw // 2] = sees.to(dtype)
    return mask


def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  mask_type: str = "B", dilation: int = 1, color_groups: int = 1) -> torch.Tensor:
    """F.conv2d with the PixelCNN-masked weight and "same" padding."""
    c_out, c_in, kh, kw = weight.shape
    mask = masked_conv2d_mask(c_out, c_in, kh, kw, mask_type, color_groups, dtype=weight.dtype,
                              device=weight.device)
    padding = (dilation * (kh // 2), dilation * (kw // 2))
    return torch.nn.functional.conv2d(x, weight * mask, bias, padding=padding, dilation=dilation)
