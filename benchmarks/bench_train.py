"""End-to-end training throughput: mmgen models vs the same models written in plain PyTorch.

    python benchmarks/bench_train.py [--device cuda] [--repeat 7]

Each family is the model of its preset (vae-mnist, vqvae-mnist's autoencoder stage, pixelcnn-mnist on
real MNIST-5k batches, dynamically binarized; mvae-, mmvae-, mopoe-trimodal and mfm-trimodal-unsup on
real mnist-trimodal batches: image, log-mel speech, caption), trained with Adam; one step is
zero_grad + loss + backward + optimizer step. The plain-PyTorch rows run the same architecture,
weights and data with mmgen's fused ops replaced by what a user would write instead:

  reparameterize   mu + exp(logvar / 2) * randn_like(mu), KL written out in autograd ops
  gaussian_kl      the KL to N(0, I) written out in autograd ops
  vector_quantize  cdist + argmin, codebook[idx], straight-through x + (q - x).detach(),
                   mse(q, x.detach()) + beta * mse(x, q.detach())
  vq_ema_stats     one_hot(idx).T @ x and one_hot(idx).sum(0)
  masked_conv2d    F.conv2d with the weight multiplied by the PixelCNN mask

Reported: median ms per step with ``ms_per_step_spread`` = [q1, q3] of the repeats (see common.py),
images/s at the median; ``plain/mmgen`` > 1 means mmgen is faster. The variants of a family are
built side by side and timed interleaved (each runs once per round, the order alternating:
common.interleaved_timing), so a drift of the machine's speed does not favour either. Both variants
run the same model and algorithm, so this is a kernel speed-up (of the fused ops within a whole
training step).

``--compile`` adds the rows "mmgen+compile" and "plain+compile" for vae, vqvae and pixelcnn: the
training objective (``loss``; the VQ-VAE's ``autoencoder_loss``, stage 1 without the host read of its
step count) compiled with ``torch.compile(fullgraph=True)`` (inductor), its backward compiled with
it; zero_grad and the Adam step stay eager as in the other rows. mmgen's ops run inside the
compiled graph as they are; the plain-PyTorch formulation is compiled whole (inductor fuses it and
draws its own random numbers). ``compile_s`` is the wall time of the first step (tracing and
compiling forward and backward, plus one step), left out of the per-step times;
``compiled_speedup`` = eager ms / compiled ms of the same variant, and ``plain/mmgen`` compares the
two compiled rows.
"""
from __future__ import annotations

import contextlib
import time

import torch
import torch._dynamo
import torch.nn.functional as F
from common import interleaved_timing, median_and_spread, parser, print_table, sync, write_json

import mmgen
import mmgen.nn.masked_conv as masked_conv_layer
from mmgen import presets, runs
from mmgen.data import load
from mmgen.models import VQVAE, from_config
from mmgen.ops import reference

COMPILED = ("vae", "vqvae", "pixelcnn")  # the families whose training step compiles into one graph
FAMILIES = {"vae": "vae-mnist", "vqvae": "vqvae-mnist", "pixelcnn": "pixelcnn-mnist",
            "mvae": "mvae-trimodal", "mmvae": "mmvae-trimodal", "mopoe": "mopoe-trimodal",
            "mfm": "mfm-trimodal-unsup"}


def plain_reparameterize(mu, logvar, *, generator=None, return_kl=False, backend="auto"):
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    if not return_kl:
        return z
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return z, kl.flatten(1).sum(1)


def plain_gaussian_kl(mu, logvar, *, backend="auto"):
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).flatten(1).sum(1)


def plain_vq_nearest(x, codebook, *, backend="auto"):
    dist = torch.cdist(x, codebook)
    sqdist, idx = dist.min(1)
    return idx, sqdist.pow(2)


def plain_vector_quantize(x, codebook, *, beta=0.25, backend="auto"):
    flat = x.reshape(-1, x.shape[-1])
    idx = torch.cdist(flat.detach(), codebook.detach()).argmin(1)
    q = codebook[idx].view_as(x)
    loss = F.mse_loss(q, x.detach()) + beta * F.mse_loss(x, q.detach())
    return x + (q - x).detach(), idx.view(x.shape[:-1]), loss


def plain_vq_ema_stats(x, indices, num_codes, *, backend="auto"):
    one_hot = F.one_hot(indices, num_codes).to(x.dtype)
    return one_hot.sum(0), one_hot.T @ x


def plain_masked_conv2d(x, weight, bias=None, *, mask_type="B", dilation=1, color_groups=1, backend="auto"):
    c_out, c_in, kh, kw = weight.shape
    mask = reference.masked_conv2d_mask(c_out, c_in, kh, kw, mask_type, color_groups,
                                        dtype=weight.dtype, device=weight.device)
    return F.conv2d(x, weight * mask, bias, padding=(dilation * (kh // 2), dilation * (kw // 2)),
                    dilation=dilation)


@contextlib.contextmanager
def plain_pytorch():
    """Swap mmgen's ops for their plain-PyTorch formulations inside the models."""
    swaps = [(mmgen.ops, "reparameterize", plain_reparameterize),
             (mmgen.ops, "gaussian_kl", plain_gaussian_kl),
             (mmgen.ops, "vq_nearest", plain_vq_nearest),
             (mmgen.ops, "vector_quantize", plain_vector_quantize),
             (mmgen.ops, "vq_ema_stats", plain_vq_ema_stats),
             (masked_conv_layer, "masked_conv2d", plain_masked_conv2d)]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in swaps]
    try:
        for obj, name, fn in swaps:
            setattr(obj, name, fn)
        yield
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)


def in_context(step, context):
    """step() run inside ``context()`` (plain_pytorch or a null context) at every call."""
    def run():
        with context():
            step()
    return run


def training_step(family: str, device: str, compile: bool = False):
    """A closure doing one training step of the family's preset model on a fixed real batch (with
    ``compile``, its objective compiled: see the module docs)."""
    config = presets.get(FAMILIES[family])
    multimodal = config["data"]["name"] == "mnist-trimodal"
    data = runs.dataset(config, "train") if multimodal else load("mnist", "train", binarize="dynamic")
    model_config = runs.model_config(config, data)  # data shapes, vocabularies, ... from the data
    torch.manual_seed(0)
    model = from_config(model_config).to(device).train()
    batch_size = config["train"]["batch_size"]
    batch = next(data.batches(batch_size, shuffle=True))
    x = {k: v.to(device) for k, v in batch.items()} if multimodal else batch["x"].to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss = model.loss
    if compile:
        loss = torch.compile(model.autoencoder_loss if isinstance(model, VQVAE) else model.loss, fullgraph=True)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss(x).backward()
        optimizer.step()

    return step, batch_size


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--compile", action="store_true",
                   help=f"also time the steps compiled with torch.compile(fullgraph=True) ({', '.join(COMPILED)})")
    args = p.parse_args()
    rows = []
    for family in args.families:
        compiled = args.compile and family in COMPILED
        variants = ("mmgen", "plain") + (("mmgen+compile", "plain+compile") if compiled else ())
        steps, extras = {}, {}
        torch._dynamo.reset()
        for variant in variants:
            context = plain_pytorch if variant.startswith("plain") else contextlib.nullcontext
            extras[variant] = {}
            with context():
                step, batch = training_step(family, args.device, compile=variant.endswith("+compile"))
                if variant.endswith("+compile"):
                    start = time.perf_counter()
                    step()
                    sync(args.device)
                    extras[variant]["compile_s"] = time.perf_counter() - start
            steps[variant] = in_context(step, context)
        timings = interleaved_timing(steps, args.device, warmup=2, repeat=args.repeat)
        results = {}
        for variant, t in timings.items():
            results[variant] = ms = t.median
            rows.append({"family": family, "preset": FAMILIES[family], "variant": variant,
                         "batch": batch, **median_and_spread("ms_per_step", t),
                         "images_per_s": batch / ms * 1e3, **extras[variant]})
        for r in rows[-len(results):]:
            compiled_row = r["variant"].endswith("+compile")
            suffix = "+compile" if compiled_row else ""
            r["plain/mmgen"] = results["plain" + suffix] / results["mmgen" + suffix]
            if compiled_row:
                r["compiled_speedup"] = results[r["variant"].removesuffix("+compile")] / results[r["variant"]]
    print(f"training throughput, float32, {args.device}, {torch.get_num_threads()} threads; "
          f"median ms per step and [q1, q3] of {args.repeat} runs")
    print_table(rows, ["family", "variant", "batch", "ms_per_step", "ms_per_step_spread", "images_per_s",
                       "plain/mmgen"] + (["compile_s", "compiled_speedup"] if args.compile else []))
    write_json("train", args.device, rows, args.out, repeat=args.repeat, compile=args.compile)


if __name__ == "__main__":
    main()
