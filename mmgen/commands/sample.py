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
    p.add_argument("--label", type=int, help="class to draw, for models conditioned on labels (cvae, m2); "
                                             "default: the classes in turn")
    p.add_argument("--out", help="PNG path (default RUN_DIR/samples/sample-seed<SEED>.png)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.n < 1:
        raise SystemExit(f"mmgen sample: -n must be >= 1, got {args.n}")
    config = runs.read_run_config(args.run_dir)
    model = runs.load_model(args.run_dir)
    model.eval()
    if args.label is not None and not getattr(model, "condition_on_labels", False):
        raise SystemExit(f"mmgen sample: --label {args.label} needs a label-conditioned model (cvae, m2); "
                         f"{args.run_dir} holds a {type(model).__name__}")
    cond = {} if args.label is None else {"y": args.label}
    images = model.sample(args.n, generator=torch.Generator().manual_seed(args.seed), **cond).float()
    levels = getattr(runs.dataset(config, "test"), "levels", None)
    if levels:
        images = images / (levels - 1)
    out = args.out or os.path.join(args.run_dir, "samples", f"sample-seed{args.seed}.png")
    save_png(image_grid(images), out, scale=max(1, 112 // images.shape[-1]))
    print(f"wrote {args.n} samples to {out}")
    return 0
