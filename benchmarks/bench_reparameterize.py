"""Fused reparameterization (z alone and z + KL), forward + backward: mmgen vs eager PyTorch vs torch.compile.

    python benchmarks/bench_reparameterize.py [--device cuda] [--no-compile-search] [--shapes 16M,1024x1024] [--quick]

Shapes (``SHAPES``; 16M elements each but the 1M one and the last): 1-D ``[16M]``, ``[8M, 2]``,
``[2M, 8]``, ``[256K, 64]``, ``[1024, 1024]``, ``[1024, 16384]`` and ``[64, 32]`` (one VAE step's
latents: what the op costs per call beyond its arithmetic, dispatch and autograd), each timed for z
alone and for z + KL.
``--shapes`` picks some by name, ``--quick`` runs ``[1024, 1024]`` and ``[16M]`` only. Eager is what
a user writes: ``mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)`` plus, with the KL,
``0.5 * (exp(logvar) + mu^2 - 1 - logvar)`` summed over all dims but 0; mmgen and eager are timed
interleaved (``common.interleaved_timing``: one run of each per round). On CUDA the table also gives
the forward's achieved bandwidth (read mu, logvar; write z) against the device's copy bandwidth.
The JSON records, besides the machine (CPU model, threads, build) and the commit, ``cpu_isa``: the
CPU code path the kernels ran (``MMGEN_CPU_ISA`` forces a lower one).

The torch.compile baseline is the same eager function given its best chance:

* static shapes: ``torch.compile(eager, dynamic=False)``, compiled afresh for every shape
  (``torch._dynamo.reset()`` first), so each shape runs its own specialized graph;
* compilation is never timed: the forward graph compiles on the first call and the backward graph
  on the first backward, both inside ``COMPILE_WARMUP`` untimed calls before any timing; timing runs
  under ``torch._dynamo.config.error_on_recompile``, so a recompile would abort the benchmark rather
  than be timed;
* its settings are picked per shape by a short measurement (``--repeat`` runs each, median) among
  ``COMPILE_CANDIDATES``: mode ``default`` or ``max-autotune-no-cudagraphs`` (the CUDA-graph-free
  max-autotune, the one usable on CPU), each with inductor's own random numbers or
  ``fallback_random=True`` (the compiled code calls ATen's ``randn_like``, as eager does, and fuses
  the rest). The row records the pick (``compile_config``), every candidate's quick median
  (``compile_search_ms``) and the first (compiling) call's time. ``--no-compile-search`` uses
  ``COMPILE_DEFAULT`` of the device instead.

Why the search: on CPU, inductor's own random numbers (a Philox normal per element in the
generated C++) are many times slower than ATen's ``randn_like``, enough to make the compiled
forward + backward slower than eager; ``fallback_random=True`` removes that, and which mode is
faster depends on the shape and the device. ``compile_search_ms`` records what each candidate took
in the run itself. A compiled baseline slower than eager is a misconfigured one; where the best
candidate is still slower than eager, ``compile_vs_eager`` (> 1) shows it: a finding, not
compilation time. ``compile_first_call_s`` is the compiling call (fast when inductor's on-disk
cache already holds the graphs, e.g. from the search).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch._dynamo
import torch._inductor
from common import interleaved_timing, median_and_spread, parser, print_table, sync, time_ms, timing, write_json

import mmgen

SHAPES = {"16M": (1 << 24,), "8Mx2": (1 << 23, 2), "2Mx8": (1 << 21, 8), "256Kx64": (1 << 18, 64),
          "1024x1024": (1024, 1024), "1024x16384": (1024, 16384), "64x32": (64, 32)}
QUICK = ("1024x1024", "16M")
COMPILE_CANDIDATES = [{"mode": mode, "fallback_random": fallback}
                      for mode in ("default", "max-autotune-no-cudagraphs") for fallback in (True, False)]
# --no-compile-search: what the search picked on the 2-core CPU test machine (1M) and an H200 (both sizes)
COMPILE_DEFAULT = {"cpu": {"mode": "default", "fallback_random": True},
                   "cuda": {"mode": "max-autotune-no-cudagraphs", "fallback_random": True}}
COMPILE_WARMUP = 3  # untimed calls after compiling: forward and backward graphs built and run
# every timed sample is at least this long: a [64, 32] call (tens of microseconds) runs a few
# hundred times per sample, timed as one (common.interleaved_timing); the big shapes run once
MIN_SAMPLE_MS = 20.0


def eager_z(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def eager_z_kl(mu, logvar):
    kl = 0.5 * (torch.exp(logvar) + mu * mu - 1.0 - logvar).reshape(mu.shape[0], -1).sum(1)
    return eager_z(mu, logvar), kl


def native_z(mu, logvar):
    return mmgen.ops.reparameterize(mu, logvar)


def native_z_kl(mu, logvar):
    return mmgen.ops.reparameterize(mu, logvar, return_kl=True)


# output -> (mmgen, eager)
FUNCTIONS = {"z": (native_z, eager_z), "z, kl": (native_z_kl, eager_z_kl)}


def fwd_bwd(fn, mu, logvar, gz, gk):
    def run():
        out = fn(mu, logvar)
        if isinstance(out, tuple):
            torch.autograd.backward(out, (gz, gk))
        else:
            out.backward(gz)
        mu.grad = logvar.grad = None
    return run


def label(config: dict) -> str:
    return f"{config['mode']}, fallback_random={config['fallback_random']}"


def compiled_fwd_bwd(eager, config: dict, device: str, *tensors):
    """A warmed-up forward + backward closure of ``eager`` compiled for these shapes with
    ``config``, and the seconds its first (compiling) call took."""
    torch._dynamo.reset()  # this shape and config get their own graphs
    options = {**torch._inductor.list_mode_options(config["mode"]), "fallback_random": config["fallback_random"]}
    run = fwd_bwd(torch.compile(eager, dynamic=False, options=options), *tensors)
    start = time.perf_counter()
    run()
    sync(device)
    first_s = time.perf_counter() - start
    for _ in range(COMPILE_WARMUP - 1):
        run()
    sync(device)
    return run, first_s


def time_compiled(eager, config: dict, device: str, repeat: int, *tensors):
    run, first_s = compiled_fwd_bwd(eager, config, device, *tensors)
    with torch._dynamo.config.patch(error_on_recompile=True):
        return timing(run, device, warmup=1, repeat=repeat, min_sample_ms=MIN_SAMPLE_MS), first_s


def compile_baseline(eager, device: str, repeat: int, search: bool, *tensors):
    """(timing, config, first-call seconds, {candidate: quick median ms}) of the best compiled baseline."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    quick = {}
    config = COMPILE_DEFAULT[kind]
    if search:
        for candidate in COMPILE_CANDIDATES:
            t, _ = time_compiled(eager, candidate, device, repeat, *tensors)
            quick[label(candidate)] = t.median
        config = min(COMPILE_CANDIDATES, key=lambda c: quick[label(c)])
    t, first_s = time_compiled(eager, config, device, repeat, *tensors)  # recompiled: reset() dropped it
    return t, config, first_s, quick


def copy_bandwidth_gbs(device: str, numel: int, repeat: int) -> float:
    src = torch.empty(numel * 3, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, repeat=repeat)
    return 2 * src.numel() * 4 / ms / 1e6


def shape_name(shape: tuple[int, ...]) -> str:
    """``[16M]``, ``[8M, 2]``, ``[1024, 1024]``: sizes of 64K and up in K or M where exact."""
    def short(n: int) -> str:
        for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
            if n >= 64 * 1024 and n % size == 0:
                return f"{n // size}{unit}"
        return str(n)
    return "[" + ", ".join(short(n) for n in shape) + "]"


def selected_shapes(args) -> list[str]:
    if args.quick:
        return list(QUICK)
    if not args.shapes:
        return list(SHAPES)
    names = [n.strip() for n in args.shapes.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise SystemExit(f"bench_reparameterize: unknown shape(s) {unknown or args.shapes!r}; "
                         f"choose from {', '.join(SHAPES)}")
    return names


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--compile-search", action=argparse.BooleanOptionalAction, default=True,
                   help="pick the torch.compile settings per case by a short measurement "
                        "(default); --no-compile-search uses COMPILE_DEFAULT")
    p.add_argument("--shapes", default=None,
                   help=f"comma-separated shape names to run (default: all of {', '.join(SHAPES)})")
    p.add_argument("--quick", action="store_true", help=f"only {' and '.join(QUICK)}")
    args = p.parse_args()
    dev = args.device
    rows = []
    for name in selected_shapes(args):
        shape = SHAPES[name]
        mu = torch.randn(shape, device=dev, requires_grad=True)
        logvar = (0.5 * torch.randn(shape, device=dev)).requires_grad_()
        gz = torch.randn(shape, device=dev)
        gk = torch.randn(shape[0], device=dev)
        tensors = (mu, logvar, gz, gk)
        for output, (native, eager) in FUNCTIONS.items():
            t_mmgen, t_eager = interleaved_timing({"mmgen": fwd_bwd(native, *tensors), "eager": fwd_bwd(eager, *tensors)},
                                                  dev, repeat=args.repeat, min_sample_ms=MIN_SAMPLE_MS).values()
            t_compile, config, first_s, quick = compile_baseline(eager, dev, args.repeat, args.compile_search,
                                                                 *tensors)
            with torch.no_grad():
                t_fwd = timing(lambda: native(mu, logvar), dev, repeat=args.repeat, min_sample_ms=MIN_SAMPLE_MS)
            row = {"N": shape_name(shape), "output": output, "shape": list(shape),
                   **median_and_spread("mmgen_ms", t_mmgen), **median_and_spread("eager_ms", t_eager),
                   **median_and_spread("compile_ms", t_compile),
                   "eager/mmgen": t_eager.median / t_mmgen.median,
                   "compile/mmgen": t_compile.median / t_mmgen.median,
                   "compile_vs_eager": t_compile.median / t_eager.median,
                   **median_and_spread("mmgen_fwd_ms", t_fwd),
                   "compile_config": config, "compile_first_call_s": first_s, "compile_search_ms": quick,
                   "calls_per_sample": {"mmgen": t_mmgen["calls_per_sample"], "eager": t_eager["calls_per_sample"],
                                        "compile": t_compile["calls_per_sample"]}}
            if dev.startswith("cuda"):
                numel = mu.numel()
                achieved = 3 * numel * 4 / t_fwd.median / 1e6
                peak = copy_bandwidth_gbs(dev, numel, args.repeat)
                row.update({"fwd_GBps": achieved, "copy_GBps": peak, "fwd_of_copy_bw": achieved / peak})
            rows.append(row)
            print(f"{row['N']} {output}: mmgen {t_mmgen.median:.1f} ms, eager {t_eager.median:.1f} ms, "
                  f"compile {t_compile.median:.1f} ms", flush=True)
        del mu, logvar, gz, gk, tensors
        sync(dev)
    cols = ["N", "output", "mmgen_ms", "mmgen_ms_spread", "eager_ms", "eager_ms_spread", "compile_ms",
            "compile_ms_spread", "eager/mmgen", "compile/mmgen", "compile_vs_eager", "compile settings",
            "mmgen_fwd_ms"]
    if dev.startswith("cuda"):
        cols += ["fwd_GBps", "copy_GBps", "fwd_of_copy_bw"]
    picked = "best of the candidates" if args.compile_search else "COMPILE_DEFAULT"
    cpu_isa = mmgen.ops.build_info().get("cpu_isa")
    print(f"forward + backward, float32, times in ms per call (median, spread = [q1, q3] of {args.repeat} "
          f"samples of at least {MIN_SAMPLE_MS:g} ms each); "
          f"compile: static shapes, warmed up, {picked}; CPU code path {cpu_isa}, {torch.get_num_threads()} threads")
    # (the settings as a string in the table only: every string field of a row names its case in
    # `mmgen bench`'s summary)
    print_table([{**r, "compile settings": label(r["compile_config"])} for r in rows], cols)
    write_json("reparameterize", dev, rows, args.out, repeat=args.repeat, cpu_isa=cpu_isa,
               threads=torch.get_num_threads(), min_sample_ms=MIN_SAMPLE_MS, compile_candidates=COMPILE_CANDIDATES if args.compile_search else [])


if __name__ == "__main__":
    main()
