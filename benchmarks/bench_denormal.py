"""Denormal floats on the CPU: a convolution's training step with and without them flushed to zero.

    python benchmarks/bench_denormal.py [--repeat 7] [--threads 1,2] [--fractions 0,0.04,0.25,1]

The step is one 3x3 convolution layer of an image decoder (32 -> 32 channels, batch 64, 14x14,
float32): forward, then backward with an incoming gradient of which ``fraction`` of the entries
are denormal (magnitude 1e-39 .. 1e-38, random signs; the rest N(0, 1e-3)), as the gradients of a
saturated or importance-weighted model come (docs/training.md: about 4% of an image decoder's
convolution gradients in mmvae-trimodal after 500 steps). Modes, timed interleaved in one process:

  ieee    IEEE gradual underflow on every thread (torch's default)
  torch   ``torch.set_flush_denormal(True)``: flush-to-zero and denormals-are-zero on the calling
          thread only; PyTorch's other intra-op threads keep computing with denormals
  mmgen   ``mmgen.ops.set_flush_denormal(True)``: every thread of PyTorch's pool (what the trainer
          and ``mmgen eval`` use on the CPU)

Reported per thread count and fraction: the median ms per step with [q1, q3], and ``ieee/mmgen``,
``torch/mmgen`` (> 1: flushing on every thread is faster by that factor). Needs mmgen's native
library (without it ``set_flush_denormal`` sets the calling thread only).
"""
from __future__ import annotations

import torch
from common import interleaved_timing, median_and_spread, parser, print_table, write_json

import mmgen.ops

MODES = ("ieee", "torch", "mmgen")


def set_mode(mode: str) -> None:
    mmgen.ops.set_flush_denormal(mode == "mmgen")  # every pool thread: on, or back to IEEE
    if mode == "torch":
        torch.set_flush_denormal(True)  # the calling thread only


def case(fraction: float, seed: int = 0):
    """The layer, its input and the incoming gradient with ``fraction`` of its entries denormal
    (made under IEEE on every thread: with flush-to-zero on, the tiny products would be zeros)."""
    set_mode("ieee")
    g = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    x = torch.randn(64, 32, 14, 14, generator=g).requires_grad_(True)
    grad = torch.randn(64, 32, 14, 14, generator=g) * 1e-3
    tiny = (1.0 + 9.0 * torch.rand(grad.shape, generator=g)) * 1e-39 * torch.randn(grad.shape, generator=g).sign()
    denormal = torch.rand(grad.shape, generator=g) < fraction
    grad = torch.where(denormal, tiny, grad)
    kept = grad[denormal].abs()
    assert bool(((kept > 0) & (kept < torch.finfo(torch.float32).tiny)).all()), "the denormal entries must stay denormal"

    def step():
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(grad)
    return step


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    p.add_argument("--fractions", default="0,0.04,0.25,1", help="comma-separated shares of denormal gradients")
    args = p.parse_args()
    if args.device != "cpu":
        raise ValueError(f"--device: denormals are a CPU matter, got {args.device!r}")
    if not mmgen.ops.has_native():
        raise SystemExit("bench_denormal needs mmgen's native library (set_flush_denormal on every thread)")
    fractions = [float(f) for f in args.fractions.split(",")]
    bad = [f for f in fractions if not 0 <= f <= 1]
    if bad:
        raise ValueError(f"--fractions must lie in [0, 1], got {bad}")
    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    try:
        for n in threads:
            torch.set_num_threads(n)
            for fraction in fractions:
                step = case(fraction)

                def in_mode(mode):
                    def run():
                        set_mode(mode)
                        step()
                    return run
                timed = interleaved_timing({m: in_mode(m) for m in MODES}, repeat=args.repeat, warmup=2)
                for mode in MODES:
                    rows.append({"threads": n, "denormal_fraction": fraction, "mode": mode,
                                 **median_and_spread("ms", timed[mode]),
                                 "ieee/mmgen": timed["ieee"].median / timed["mmgen"].median,
                                 "torch/mmgen": timed["torch"].median / timed["mmgen"].median})
    finally:
        set_mode("ieee")
    print_table(rows, ["threads", "denormal_fraction", "mode", "ms", "ms_spread", "ieee/mmgen", "torch/mmgen"])
    torch.set_num_threads(max(threads))
    write_json("denormal", "cpu", rows, args.out, repeat=args.repeat, layer="Conv2d(32, 32, 3, padding=1)",
               input_shape=[64, 32, 14, 14])


if __name__ == "__main__":
    main()
