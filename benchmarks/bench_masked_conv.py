"""PixelCNN masked convolution and sampling: mmgen vs F.conv2d on a masked weight; cached vs naive.

    python benchmarks/bench_masked_conv.py [--device cuda] [--skip-naive]

Convolution: forward + backward (input, weight and bias gradients) of mmgen.ops.masked_conv2d
against what a user writes without it, ``F.conv2d(x, weight * mask, bias, padding=k // 2)``, at
batch 32, 64 -> 64 channels, 28x28, float32. Sampling: a gated PixelCNN with 8 blocks (32 feature maps) on 28x28
binary images, batch 16, with the cached (incremental) sampler against the naive one (a full
forward pass per pixel, timed once), from the same seed; the samples must be identical.
The load average is recorded: on a shared 2-core machine OpenMP regions of tiny ops stall when the
other core is busy, so compare runs taken under similar load (or pass --threads 1).
"""
from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from common import parser, print_table, sync, time_ms, write_json

import mmgen
from mmgen.models import PixelCNN
from mmgen.ops import reference

CONV_CASES = [(7, "B"), (7, "A"), (3, "B")]
BATCH, CHANNELS, SIZE = 32, 64, 28
SAMPLER = dict(channels=1, levels=2, image_size=28, hidden=32, layers=8, kernel_size=3, first_kernel_size=7)
SAMPLES = 16


def conv_rows(dev: str, repeat: int) -> list[dict]:
    rows = []
    for k, mask_type in CONV_CASES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(BATCH, CHANNELS, SIZE, SIZE, generator=gen).to(dev).requires_grad_()
        w = (0.05 * torch.randn(CHANNELS, CHANNELS, k, k, generator=gen)).to(dev).requires_grad_()
        b = torch.zeros(CHANNELS, device=dev, requires_grad=True)
        grad = torch.randn(BATCH, CHANNELS, SIZE, SIZE, generator=gen).to(dev)
        mask = reference.masked_conv2d_mask(CHANNELS, CHANNELS, k, k, mask_type, device=dev)

        def native():
            return mmgen.ops.masked_conv2d(x, w, b, mask_type=mask_type, backend="native")

        def masked_weight():
            return F.conv2d(x, w * mask, b, padding=k // 2)

        def fwd_bwd(fn):
            def run():
                torch.autograd.backward(fn(), grad)
                x.grad = w.grad = b.grad = None
            return run

        t_native = time_ms(fwd_bwd(native), dev, repeat=repeat)
        t_conv = time_ms(fwd_bwd(masked_weight), dev, repeat=repeat)
        with torch.no_grad():
            f_native = time_ms(native, dev, repeat=repeat)
            f_conv = time_ms(masked_weight, dev, repeat=repeat)
            err = (native() - masked_weight()).abs().max().item()
        rows.append({"case": f"{k}x{k} '{mask_type}'", "taps": int(mask[0, 0].sum().item()),
                     "mmgen_ms": t_native, "conv2d_ms": t_conv, "conv2d/mmgen": t_conv / t_native,
                     "mmgen_fwd_ms": f_native, "conv2d_fwd_ms": f_conv,
                     "fwd conv2d/mmgen": f_conv / f_native, "max_abs_diff": err})
    return rows


def sampling_row(dev: str, repeat: int, naive: bool) -> dict:
    torch.manual_seed(0)
    model = PixelCNN(**SAMPLER).to(dev).eval()
    gen_dev = "cuda" if dev.startswith("cuda") else "cpu"

    def draw(cached):
        return model.sample(SAMPLES, generator=torch.Generator(gen_dev).manual_seed(1), cached=cached)

    cached_s = time_ms(lambda: draw(True), dev, warmup=1, repeat=repeat) / 1e3
    row = {"model": f"PixelCNN {SAMPLER['layers']} blocks, hidden {SAMPLER['hidden']}, 28x28 binary",
           "batch": SAMPLES, "cached_s": cached_s, "naive_s": None, "naive/cached": None,
           "identical": None}
    if naive:
        fast = draw(True)
        sync(dev)
        start = time.perf_counter()
        slow = draw(False)
        sync(dev)
        row["naive_s"] = time.perf_counter() - start
        row["naive/cached"] = row["naive_s"] / cached_s
        row["identical"] = bool(torch.equal(fast, slow))
    return row


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--skip-naive", action="store_true", help="do not time the naive sampler")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    conv = conv_rows(dev, args.repeat)
    print(f"masked conv forward + backward, batch {BATCH}, {CHANNELS}->{CHANNELS} channels, "
          f"{SIZE}x{SIZE}, float32, ms (median)")
    print_table(conv, ["case", "taps", "mmgen_ms", "conv2d_ms", "conv2d/mmgen", "mmgen_fwd_ms",
                       "conv2d_fwd_ms", "fwd conv2d/mmgen", "max_abs_diff"])
    sampling = sampling_row(dev, max(1, min(args.repeat, 3)), not args.skip_naive)
    print("\nsampling, seconds (cached: median; naive: one run)")
    print_table([sampling], ["model", "batch", "cached_s", "naive_s", "naive/cached", "identical"])
    write_json("masked_conv", dev, conv, args.out, sampling=sampling, sampler_config=SAMPLER,
               load_average=os.getloadavg())


if __name__ == "__main__":
    main()
