"""``mmgen sample RUN_DIR``."""
from __future__ import annotations

import os

import torch

from mmgen import runs
from mmgen.io import image_grid, save_png


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sample", help="draw samples from a trained run and write a PNG grid")
    p.add_argument("run_dir", help="a run folder written by `mmgen train`")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="PNG path (default RUN_DIR/samples/sample-seed<SEED>.png)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.n < 1:
        raise SystemExit(f"mmgen sample: -n must be >= 1, got {args.n}")
    config = runs.read_run_config(args.run_dir)
    model = runs.load_model(args.run_dir)
    model.eval()
    images = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed)).float()
    levels = getattr(runs.dataset(config, "test"), "levels", None)
    if levels:
        images = images / (levels - 1)
    out = args.out or os.path.join(args.run_dir, "samples", f"sample-seed{args.seed}.png")
    save_png(image_grid(images), out, scale=max(1, 112 // images.shape[-1]))
    print(f"wrote {args.n} samples to {out}")
    return 0
