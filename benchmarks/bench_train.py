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
images/s at the median; ``plain/mmgen`` > 1 means mmgen is faster. Both variants run the same
model and algorithm, so this is a kernel speed-up (of the fused ops within a whole training step).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from common import median_and_spread, parser, print_table, timing, write_json

import mmgen
import mmgen.nn.masked_conv as masked_conv_layer
from mmgen import presets, runs
from mmgen.data import load
from mmgen.models import from_config
from mmgen.ops import reference

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


def training_step(family: str, device: str):
    """A closure doing one training step of the family's preset model on a fixed real batch."""
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

    def step():
        optimizer.zero_grad(set_to_none=True)
        model.loss(x).backward()
        optimizer.step()

    return step, batch_size


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    args = p.parse_args()
    rows = []
    for family in args.families:
        results = {}
        for variant in ("mmgen", "plain"):
            with plain_pytorch() if variant == "plain" else contextlib.nullcontext():
                step, batch = training_step(family, args.device)
                t = timing(step, args.device, warmup=2, repeat=args.repeat)
            results[variant] = ms = t.median
            rows.append({"family": family, "preset": FAMILIES[family], "variant": variant,
                         "batch": batch, **median_and_spread("ms_per_step", t),
                         "images_per_s": batch / ms * 1e3})
        for r in rows[-2:]:
            r["plain/mmgen"] = results["plain"] / results["mmgen"]
    print(f"training throughput, float32, {args.device}, {torch.get_num_threads()} threads; "
          f"median ms per step and [q1, q3] of {args.repeat} runs")
    print_table(rows, ["family", "variant", "batch", "ms_per_step", "ms_per_step_spread", "images_per_s",
                       "plain/mmgen"])
    write_json("train", args.device, rows, args.out, repeat=args.repeat)


if __name__ == "__main__":
    main()
