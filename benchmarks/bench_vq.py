"""Nearest-code search for vector quantization: mmgen vs what a user would write instead.

    python benchmarks/bench_vq.py [--device cuda] [--repeat 5]

Rows, float32, for (N, K, D) = (65536, 512, 64), (16384, 8192, 256), (4096, 1024, 64) and
(65536, 8192, 32):
  mmgen.vq_nearest                fused distance + argmin, no N x K buffer
  mmgen.vector_quantize           the full forward (indices, quantized rows, loss)
  cdist+argmin                    torch.cdist(x, E).argmin(1) (its default compute_mode)
  cdist(mm)+argmin                torch.cdist(x, E, compute_mode="use_mm_for_euclid_dist").argmin(1)
  matmul+argmin                   (x2 - 2 x @ E^T + e2).argmin(1), the norm expansion
  addmm+argmin                    torch.addmm(e2, x, E^T, alpha=-2).argmin(1): the expansion in one
                                  GEMM, without the row norms (they do not change the argmin)
  vector_quantize_pytorch         VectorQuantize(dim=D, codebook_size=K) forward in eval mode
                                  (a full quantizer forward; skipped when not installed)
Times are medians in ms (``ms``), with ``ms_spread`` = [q1, q3] of the repeats (see common.py), the
methods of a shape timed interleaved (``common.interleaved_timing``: one run of each per round);
every row is a kernel speed-up (the same search, computed differently). ``cdist+argmin/this`` is
the speed-up over cdist+argmin; ``best/this`` over the fastest of the four PyTorch formulations at
that shape (a user's best choice). The header and the JSON name the CPU code path in use
(``build_info()["cpu_isa"]``, set with ``MMGEN_CPU_ISA``) and ``MMGEN_VQ_PATH`` (the CPU kernel's
direct or GEMM path; unset: chosen by shape, see docs/kernels.md); the JSON also records the CPU
model, threads and commit (common.write_json). Peak extra memory is what
a call adds on top of its inputs: on CPU the peak resident set (VmHWM, reset through
/proc/self/clear_refs) of a fresh process running the call once, minus its resident set before the
call (after a warm-up call on tiny inputs); on CUDA torch.cuda.max_memory_allocated.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from common import interleaved_timing, median_and_spread, parser, print_table, sync, write_json

import mmgen
from mmgen import provenance

SHAPES = [(65536, 512, 64), (16384, 8192, 256), (4096, 1024, 64), (65536, 8192, 32)]
BASELINE = "cdist+argmin"
PYTORCH = ("cdist+argmin", "cdist(mm)+argmin", "matmul+argmin", "addmm+argmin")


def _vqtorch_module(k: int, d: int, device: str):
    try:
        from vector_quantize_pytorch import VectorQuantize
    except ImportError:
        return None
    return VectorQuantize(dim=d, codebook_size=k).to(device).eval()


def methods(k: int, d: int, device: str) -> dict:
    """name -> callable(x, E) returning the indices [N], or None when unavailable."""
    def matmul_argmin(x, e):
        dist = (x * x).sum(1, keepdim=True) - 2.0 * (x @ e.T) + (e * e).sum(1)
        return dist.argmin(1)

    def addmm_argmin(x, e):
        return torch.addmm((e * e).sum(1), x, e.T, alpha=-2.0).argmin(1)

    vqtorch = _vqtorch_module(k, d, device)

    def vqtorch_forward(x, e):
        vqtorch._codebook.embed.data.copy_(e.unsqueeze(0))  # search the same codebook
        return vqtorch(x.unsqueeze(0))[1].squeeze(0)

    return {
        "mmgen.vq_nearest": lambda x, e: mmgen.ops.vq_nearest(x, e, backend="native")[0],
        "mmgen.vector_quantize": lambda x, e: mmgen.ops.vector_quantize(x, e, backend="native")[1],
        "cdist+argmin": lambda x, e: torch.cdist(x, e).argmin(1),
        "cdist(mm)+argmin": lambda x, e: torch.cdist(x, e, compute_mode="use_mm_for_euclid_dist").argmin(1),
        "matmul+argmin": matmul_argmin,
        "addmm+argmin": addmm_argmin,
        "vector_quantize_pytorch": vqtorch_forward if vqtorch is not None else None,
    }


def inputs(n: int, k: int, d: int, device: str):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, d, generator=g).to(device), torch.randn(k, d, generator=g).to(device))


def peak_extra_mb_cuda(fn, x, e) -> float:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn(x, e)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(name: str, n: int, k: int, d: int) -> None:
    """Run in a fresh process: print the peak RSS growth (MiB) of one call of `name`."""
    fn = methods(k, d, "cpu")[name]
    with torch.no_grad():
        fn(*inputs(64, k, d, "cpu"))  # load libraries, thread pools, lazy state
        x, e = inputs(n, k, d, "cpu")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set to the current one
        before = _status_kib("VmRSS")
        fn(x, e)
        peak = _status_kib("VmHWM")
    print(json.dumps({"extra_mb": (peak - before) / 1024}))


def peak_extra_mb_cpu(name: str, n: int, k: int, d: int) -> float:
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(here), here]))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-probe", name,
                          str(n), str(k), str(d)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mb"]


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--memory-probe", nargs=4, metavar=("METHOD", "N", "K", "D"), help="internal")
    args = p.parse_args()
    if args.memory_probe:
        name, n, k, d = args.memory_probe
        memory_probe(name, int(n), int(k), int(d))
        return
    dev = args.device
    rows, notes = [], []
    for n, k, d in SHAPES:
        x, e = inputs(n, k, d, dev)
        ref_idx = torch.cdist(x, e).argmin(1)
        shape_rows = []
        available = {}
        for name, fn in methods(k, d, dev).items():
            if fn is None:
                note = f"{name}: not installed (pip install 'mmgen[bench]'); row skipped"
                if note not in notes:
                    notes.append(note)
            else:
                available[name] = fn
        with torch.no_grad():  # the methods of a shape timed interleaved: drift falls on all alike
            times = interleaved_timing({name: (lambda fn=fn: fn(x, e)) for name, fn in available.items()}, dev,
                                       warmup=1, repeat=args.repeat)
        for name, fn in available.items():
            t = times[name]
            with torch.no_grad():
                agree = (fn(x, e) == ref_idx).float().mean().item()
                if dev.startswith("cuda"):
                    mem = peak_extra_mb_cuda(fn, x, e)
                else:
                    mem = peak_extra_mb_cpu(name, n, k, d)
            shape_rows.append({"N,K,D": f"{n},{k},{d}", "method": name, **median_and_spread("ms", t),
                               "extra_MiB": mem, "agree_with_cdist": agree})
            sync(dev)
        base = next(r["ms"] for r in shape_rows if r["method"] == BASELINE)
        best = min(r["ms"] for r in shape_rows if r["method"] in PYTORCH)
        for r in shape_rows:
            r[f"{BASELINE}/this"] = base / r["ms"]
            r["best/this"] = best / r["ms"]
        rows += shape_rows
    isa, vq_path = mmgen.ops.build_info().get("cpu_isa"), os.environ.get("MMGEN_VQ_PATH", "auto")
    print(f"nearest-code search, float32, {dev}, {provenance.cpu_name()}, cpu_isa={isa}, "
          f"MMGEN_VQ_PATH={vq_path}, {torch.get_num_threads()} threads; median ms and [q1, q3] of "
          f"{args.repeat} runs; extra_MiB = peak memory beyond the inputs")
    print_table(rows, ["N,K,D", "method", "ms", "ms_spread", f"{BASELINE}/this", "best/this", "extra_MiB",
                       "agree_with_cdist"])
    for note in notes:
        print("note:", note)
    write_json("vq", dev, rows, args.out, notes=notes, repeat=args.repeat, cpu_isa=isa, vq_path=vq_path)


if __name__ == "__main__":
    main()
