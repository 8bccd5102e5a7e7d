"""PixelCNN masked convolution and sampling: mmgen vs F.conv2d on a masked weight; cached vs naive.

    python benchmarks/bench_masked_conv.py [--device cuda] [--skip-naive]

Two kinds of speed-up are reported apart, each row saying which in its ``speedup`` field:

* ``kernel``: the same computation, mmgen's kernel against what a user writes without it.
  Convolution rows: forward + backward (input, weight and bias gradients) of
  mmgen.ops.masked_conv2d against ``F.conv2d(x, weight * mask, bias, padding=k // 2)``, at batch
  32, 28x28, float32 (``conv2d/mmgen``, and ``fwd conv2d/mmgen`` forward only): 7x7 and 3x3 kernels
  at 64 -> 64 channels, and the masked layers of the ``pixelcnn-mnist`` preset's gated PixelCNN
  (32 feature maps): its first horizontal 1x7 'A' (1 -> 64), the horizontal 1x3 'B' (32 -> 64), the
  1x1 'B' after the gate and the head (32 -> 32), and the output 1x1 'B' (32 -> 2).
  The ``sampling_kernel`` row: one forward pass of the sampler's PixelCNN on a batch of 16 (one
  step of the naive sampler) with its masked convolutions on mmgen's kernel against the same model
  with them on F.conv2d of the masked weight (``backend="reference"``); ``conv2d/mmgen``.
* ``algorithmic``: the same kernels, a different algorithm. The ``sampling`` row: a gated
  PixelCNN with 8 blocks (32 feature maps) drawing 16 binary 28x28 images with the cached
  (incremental) sampler against the naive one (a full forward pass per pixel, timed once), from
  the same seed; the samples must be identical (``naive/cached``). Its speed-up comes from not
  recomputing earlier pixels, not from a faster kernel, and says nothing about the kernels.

Times are medians, each with ``<name>_spread`` = [q1, q3] of the repeats (see common.py), mmgen's
and its baseline's runs interleaved (``common.interleaved_timing``); the
naive sampler runs once, so it has no spread.
The load average is recorded: on a shared 2-core machine OpenMP regions of tiny ops stall when the
other core is busy, so compare runs taken under similar load (or pass --threads 1).
"""
from __future__ import annotations

import contextlib
import os
import time

import torch
import torch.nn.functional as F
from common import interleaved_timing, median_and_spread, parser, print_table, sync, timing, write_json

import mmgen
from mmgen.models import PixelCNN
from mmgen.nn import MaskedConv2d
from mmgen.ops import reference

# (C_in, C_out, kh, kw, mask)
CONV_CASES = [(64, 64, 7, 7, "B"), (64, 64, 7, 7, "A"), (64, 64, 3, 3, "B"),
              (1, 64, 1, 7, "A"), (32, 64, 1, 3, "B"), (32, 32, 1, 1, "B"), (32, 2, 1, 1, "B")]
BATCH, SIZE = 32, 28
SAMPLER = dict(channels=1, levels=2, image_size=28, hidden=32, layers=8, kernel_size=3, first_kernel_size=7)
SAMPLES = 16


def conv_rows(dev: str, repeat: int) -> list[dict]:
    rows = []
    for c_in, c_out, kh, kw, mask_type in CONV_CASES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(BATCH, c_in, SIZE, SIZE, generator=gen).to(dev).requires_grad_()
        w = (0.05 * torch.randn(c_out, c_in, kh, kw, generator=gen)).to(dev).requires_grad_()
        b = torch.zeros(c_out, device=dev, requires_grad=True)
        grad = torch.randn(BATCH, c_out, SIZE, SIZE, generator=gen).to(dev)
        mask = reference.masked_conv2d_mask(c_out, c_in, kh, kw, mask_type, device=dev)

        def native():
            return mmgen.ops.masked_conv2d(x, w, b, mask_type=mask_type, backend="native")

        def masked_weight():
            return F.conv2d(x, w * mask, b, padding=(kh // 2, kw // 2))

        def fwd_bwd(fn):
            def run():
                torch.autograd.backward(fn(), grad)
                x.grad = w.grad = b.grad = None
            return run

        # each pair timed interleaved (common.interleaved_timing): drift falls on both alike
        t_native, t_conv = interleaved_timing({"mmgen": fwd_bwd(native), "conv2d": fwd_bwd(masked_weight)},
                                              dev, repeat=repeat).values()
        with torch.no_grad():
            f_native, f_conv = interleaved_timing({"mmgen": native, "conv2d": masked_weight}, dev,
                                                  repeat=repeat).values()
            err = (native() - masked_weight()).abs().max().item()
        rows.append({"case": f"{kh}x{kw} '{mask_type}' {c_in}->{c_out}", "speedup": "kernel",
                     "taps": int(mask[0, 0].sum().item()),
                     **median_and_spread("mmgen_ms", t_native), **median_and_spread("conv2d_ms", t_conv),
                     "conv2d/mmgen": t_conv.median / t_native.median,
                     **median_and_spread("mmgen_fwd_ms", f_native), **median_and_spread("conv2d_fwd_ms", f_conv),
                     "fwd conv2d/mmgen": f_conv.median / f_native.median, "max_abs_diff": err})
    return rows


def sampler(dev: str) -> PixelCNN:
    torch.manual_seed(0)
    return PixelCNN(**SAMPLER).to(dev).eval()


def model_name() -> str:
    return f"PixelCNN {SAMPLER['layers']} blocks, hidden {SAMPLER['hidden']}, 28x28 binary"


@contextlib.contextmanager
def conv_backend(model: torch.nn.Module, backend: str):
    """Run the model's masked convolutions on ``backend`` ("native": mmgen's kernel; "reference":
    F.conv2d on the masked weight)."""
    layers = [m for m in model.modules() if isinstance(m, MaskedConv2d)]
    saved = [m.backend for m in layers]
    try:
        for m in layers:
            m.backend = backend
        yield
    finally:
        for m, b in zip(layers, saved):
            m.backend = b


def sampling_row(dev: str, repeat: int, naive: bool) -> dict:
    """Algorithmic: the cached sampler against the naive one, both on mmgen's kernels."""
    model = sampler(dev)
    gen_dev = "cuda" if dev.startswith("cuda") else "cpu"

    def draw(cached):
        return model.sample(SAMPLES, generator=torch.Generator(gen_dev).manual_seed(1), cached=cached)

    cached = timing(lambda: draw(True), dev, warmup=1, repeat=repeat)
    row = {"model": model_name(), "speedup": "algorithmic", "batch": SAMPLES,
           **median_and_spread("cached_s", cached, 1e-3), "naive_s": None, "naive/cached": None,
           "identical": None}
    if naive:
        fast = draw(True)
        sync(dev)
        start = time.perf_counter()
        slow = draw(False)
        sync(dev)
        row["naive_s"] = time.perf_counter() - start
        row["naive/cached"] = row["naive_s"] / row["cached_s"]
        row["identical"] = bool(torch.equal(fast, slow))
    return row


def sampling_kernel_row(dev: str, repeat: int) -> dict:
    """Kernel: one naive-sampler step (a full forward pass) with mmgen's masked convolutions
    against the same model on F.conv2d of the masked weight."""
    model = sampler(dev)
    x = torch.randint(0, SAMPLER["levels"], (SAMPLES, SAMPLER["channels"], SAMPLER["image_size"],
                                             SAMPLER["image_size"]), generator=torch.Generator().manual_seed(2)).to(dev)
    def forward_with(backend):
        def run():
            with conv_backend(model, backend):
                return model(x)
        return run

    with torch.no_grad():
        t = interleaved_timing({backend: forward_with(backend) for backend in ("native", "reference")}, dev,
                               repeat=repeat)
        with conv_backend(model, "native"):
            out = model(x)
        with conv_backend(model, "reference"):
            err = (out - model(x)).abs().max().item()
    return {"model": model_name() + ", one forward pass", "speedup": "kernel", "batch": SAMPLES,
            **median_and_spread("mmgen_ms", t["native"]), **median_and_spread("conv2d_ms", t["reference"]),
            "conv2d/mmgen": t["reference"].median / t["native"].median, "max_abs_diff": err}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--skip-naive", action="store_true", help="do not time the naive sampler")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    conv = conv_rows(dev, args.repeat)
    print(f"kernel: masked conv forward + backward, batch {BATCH}, "
          f"{SIZE}x{SIZE}, float32, ms (median, spread = [q1, q3] of {args.repeat} runs)")
    print_table(conv, ["case", "taps", "mmgen_ms", "mmgen_ms_spread", "conv2d_ms", "conv2d_ms_spread",
                       "conv2d/mmgen", "mmgen_fwd_ms", "conv2d_fwd_ms", "fwd conv2d/mmgen", "max_abs_diff"])
    step = sampling_kernel_row(dev, args.repeat)
    print("\nkernel: one forward pass of the sampler's PixelCNN (a naive-sampler step), ms")
    print_table([step], ["model", "batch", "mmgen_ms", "mmgen_ms_spread", "conv2d_ms", "conv2d_ms_spread",
                         "conv2d/mmgen", "max_abs_diff"])
    sampling = sampling_row(dev, max(1, min(args.repeat, 3)), not args.skip_naive)
    print("\nalgorithmic: cached vs naive sampling, seconds (cached: median and [q1, q3]; naive: one run)")
    print_table([sampling], ["model", "batch", "cached_s", "cached_s_spread", "naive_s", "naive/cached",
                             "identical"])
    write_json("masked_conv", dev, conv, args.out, sampling=sampling, sampling_kernel=step,
               sampler_config=SAMPLER, repeat=args.repeat, load_average=os.getloadavg())

if __name__ == "__main__":
    main()
