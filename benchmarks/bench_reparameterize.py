"""Fused reparameterization (+ KL), forward + backward: mmgen vs eager PyTorch vs torch.compile.

    python benchmarks/bench_reparameterize.py [--device cuda]

Eager is what a user writes: ``mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)`` plus the KL
``0.5 * (exp(logvar) + mu^2 - 1 - logvar).sum(1)``. On CUDA the table also gives the forward's
achieved bandwidth (read mu, logvar; write z) against the device's copy bandwidth.
"""
from __future__ import annotations

import torch
from common import parser, print_table, sync, time_ms, write_json

import mmgen

SIZES = {"1M": (1024, 1024), "16M": (1024, 16384)}


def eager(mu, logvar):
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    kl = 0.5 * (torch.exp(logvar) + mu * mu - 1.0 - logvar).sum(1)
    return z, kl


def native(mu, logvar):
    return mmgen.ops.reparameterize(mu, logvar, return_kl=True)


def fwd_bwd(fn, mu, logvar, gz, gk):
    def run():
        z, kl = fn(mu, logvar)
        torch.autograd.backward((z, kl), (gz, gk))
        mu.grad = logvar.grad = None
    return run


def copy_bandwidth_gbs(device: str, numel: int, repeat: int) -> float:
    src = torch.empty(numel * 3, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, repeat=repeat)
    return 2 * src.numel() * 4 / ms / 1e6


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    dev = args.device
    compiled = torch.compile(eager)
    rows = []
    for label, shape in SIZES.items():
        mu = torch.randn(shape, device=dev, requires_grad=True)
        logvar = (0.5 * torch.randn(shape, device=dev)).requires_grad_()
        gz = torch.randn(shape, device=dev)
        gk = torch.randn(shape[0], device=dev)
        t = {name: time_ms(fwd_bwd(fn, mu, logvar, gz, gk), dev, repeat=args.repeat)
             for name, fn in [("mmgen", native), ("eager", eager), ("compile", compiled)]}
        with torch.no_grad():
            fwd = time_ms(lambda: mmgen.ops.reparameterize(mu, logvar), dev, repeat=args.repeat)
        row = {"N": label, "shape": list(shape), "mmgen_ms": t["mmgen"], "eager_ms": t["eager"],
               "compile_ms": t["compile"], "eager/mmgen": t["eager"] / t["mmgen"],
               "compile/mmgen": t["compile"] / t["mmgen"], "mmgen_fwd_ms": fwd}
        if dev.startswith("cuda"):
            numel = shape[0] * shape[1]
            achieved = 3 * numel * 4 / fwd / 1e6
            peak = copy_bandwidth_gbs(dev, numel, args.repeat)
            row.update({"fwd_GBps": achieved, "copy_GBps": peak, "fwd_of_copy_bw": achieved / peak})
        rows.append(row)
        del mu, logvar, gz, gk
        sync(dev)
    cols = ["N", "mmgen_ms", "eager_ms", "compile_ms", "eager/mmgen", "compile/mmgen", "mmgen_fwd_ms"]
    if dev.startswith("cuda"):
        cols += ["fwd_GBps", "copy_GBps", "fwd_of_copy_bw"]
    print("forward + backward, float32, times in ms (median)")
    print_table(rows, cols)
    write_json("reparameterize", dev, rows, args.out)


if __name__ == "__main__":
    main()
