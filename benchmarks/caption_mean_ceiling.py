"""What a caption -> image model that outputs the mean image of a caption would score.

With instance-level captions (``mnist-trimodal`` ``captions="instance"``, i.e. ``mnist-captions``)
a caption names the digit and the tercile of its thickness, slant and size. A model whose caption ->
image output is the average of the images that fit the caption (what a likelihood mean tends to
when the latent that the caption gives carries nothing more) is judged on a blurred digit: the size
measure reads the bounding box of pixels > 0.5, which shrinks as images are averaged.

This script measures that ceiling on real data: each image of the split is averaged with m - 1
random train images of the same digit, thickness, slant and size, and the average is judged by
:class:`mmgen.data.captions.DigitMeasure` (fitted on the train images, as the evaluation fits it),
with the true digit (the evaluation gets the digit from a classifier, so its "all" also needs the
digit right). m = 1 is the measure on the real images themselves. Writes
``benchmarks/results/caption_mean_ceiling.json``; ``--seeds`` are the draws of the averaged images.

    python benchmarks/caption_mean_ceiling.py [--m 1 2 4 8 16 32] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch

from mmgen import provenance
from mmgen.data.captions import DigitMeasure, mnist_captions
from mmgen.io import atomic_write_json

ATTRIBUTES = ("thickness", "slant", "size")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "caption_mean_ceiling.json")


def class_means(x: torch.Tensor, keys: torch.Tensor, pool_x: torch.Tensor, pool_keys: torch.Tensor,
                m: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` averaged with m - 1 random images of ``pool_x`` with the same key (all the
    pool has when it has fewer)."""
    out = x.clone()
    if m == 1:
        return out
    for i in range(len(x)):
        pool = (pool_keys == keys[i]).nonzero().flatten()
        pick = pool[torch.randperm(len(pool), generator=generator)[:m - 1]]
        out[i] = torch.cat([x[i:i + 1], pool_x[pick]]).mean(0)
    return out


def judged(measure: DigitMeasure, images: torch.Tensor, attributes: torch.Tensor) -> dict[str, float]:
    """Fraction of images whose measured thickness, slant, size (and all three) match ``attributes``."""
    predicted = measure.predict(images, attributes[:, 0])
    right = {a: predicted[a] == attributes[:, j] for j, a in enumerate(ATTRIBUTES, 1)}
    right["all"] = torch.stack(list(right.values())).all(0)
    return {a: r.double().mean().item() for a, r in right.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="images averaged")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="draws of the averaged images")
    parser.add_argument("--splits", nargs="+", default=["val", "test"], choices=["val", "test"])
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    if any(m < 1 for m in args.m):
        parser.error(f"--m values must be >= 1, got {args.m}")
    data = mnist_captions()
    train = data["train"]
    measure = DigitMeasure.fit(train.x, train.y)

    def key(a: torch.Tensor) -> torch.Tensor:  # one integer per (digit, thickness, slant, size)
        return ((a[:, 0] * 3 + a[:, 1]) * 3 + a[:, 2]) * 3 + a[:, 3]

    rows = []
    for split in args.splits:
        part = data[split]
        for m in args.m:
            per_seed = [judged(measure, class_means(part.x, key(part.attributes), train.x, key(train.attributes), m,
                                                    torch.Generator().manual_seed(seed)), part.attributes)
                        for seed in args.seeds]
            row = {"split": split, "m": m, "examples": len(part.x)}
            for a in (*ATTRIBUTES, "all"):
                values = [s[a] for s in per_seed]
                row[a] = statistics.mean(values)
                row[f"{a}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(row)
            print(f"{split:4s} m={m:3d} " + " ".join(f"{a} {row[a]:.3f}" for a in (*ATTRIBUTES, "all")), flush=True)
    result = {"benchmark": "caption_mean_ceiling", **provenance.record(), "seeds": args.seeds,
              "judge": "DigitMeasure fitted on the train split, true digit", "pool": "train", "rows": rows}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
