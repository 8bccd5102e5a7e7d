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
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The standard normals the kernels draw for elements 0..numel-1 (float64 for float64, else float32)."""
    groups = (numel + 3) // 4
    g = torch.arange(groups, dtype=torch.int64, device=device)
    base = offset // 4
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
